"""catalogue, payments, order changes: products with variants, customers' payment methods and
default address, orders' addresses, fulfilments and payment history with their money totals,
order changes awaiting confirmation, items given back (once each); a second refund of what remains

Older data keeps working: every order line's SKU becomes a single-variant product of its own; every
order gets a payment history (its total charged to the original method, which was not recorded;
each refund already sent; a cancelled order's total refunded).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 23:22:11.467717
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
    )
    op.create_table(
        "payment_methods",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("brand", sa.String(length=32), nullable=True),
        sa.Column("last_four", sa.String(length=4), nullable=True),
        sa.Column("balance_cents", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "(kind = 'gift_card' AND balance_cents IS NOT NULL AND balance_cents >= 0) OR (kind <> 'gift_card' AND balance_cents IS NULL)",
            name=op.f("ck_payment_methods_balance"),
        ),
        sa.CheckConstraint("kind IN ('credit_card', 'paypal', 'gift_card')", name=op.f("ck_payment_methods_kind")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_payment_methods_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_methods")),
    )
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_methods_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "variants",
        sa.Column("item_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.CheckConstraint("price_cents >= 0", name=op.f("ck_variants_price_nonneg")),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_variants_product_id_products")),
        sa.PrimaryKeyConstraint("item_id", name=op.f("pk_variants")),
    )
    with op.batch_alter_table("variants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_variants_product_id"), ["product_id"], unique=False)

    op.create_table(
        "fulfilments",
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tracking_ids", sa.JSON(), nullable=False),
        sa.Column("item_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_fulfilments_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("order_id", "seq", name=op.f("pk_fulfilments")),
    )
    op.create_table(
        "order_changes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("customer_id", sa.String(length=32), nullable=False),
        sa.Column("order_id", sa.String(length=32), nullable=True),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("args", sa.JSON(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("refund_cents", sa.Integer(), nullable=False),
        sa.Column("charge_cents", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=True),
        sa.Column("decided_by", sa.String(length=120), nullable=True),
        sa.Column("expires_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('cancel', 'modify_items', 'modify_address', 'modify_payment', 'return', 'exchange', 'user_address')",
            name=op.f("ck_order_changes_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('awaiting_confirmation', 'pending_approval', 'applied', 'cancelled', 'expired', 'refused', 'denied')",
            name=op.f("ck_order_changes_status"),
        ),
        sa.CheckConstraint("refund_cents >= 0 AND charge_cents >= 0", name=op.f("ck_order_changes_money_nonneg")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_order_changes_customer_id_customers")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_order_changes_order_id_orders")),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name=op.f("fk_order_changes_session_id_sessions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_changes")),
    )
    with op.batch_alter_table("order_changes", schema=None) as batch_op:
        batch_op.create_index("ix_order_changes_customer", ["customer_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_order_changes_order_id"), ["order_id"], unique=False)
        batch_op.create_index(
            "uq_order_changes_one_open",
            ["target", "kind"],
            unique=True,
            sqlite_where=sa.text(f"status IN {OPEN_CHANGES}"),
            postgresql_where=sa.text(f"status IN {OPEN_CHANGES}"),
        )

    op.create_table(
        "order_payments",
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column("method_id", sa.String(length=64), nullable=True),
        sa.Column("change_id", sa.String(length=40), nullable=True),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('payment', 'refund')", name=op.f("ck_order_payments_kind")),
        sa.CheckConstraint("amount_cents >= 0", name=op.f("ck_order_payments_amount_nonneg")),
        sa.ForeignKeyConstraint(
            ["change_id"], ["order_changes.id"], name=op.f("fk_order_payments_change_id_order_changes")
        ),
        sa.ForeignKeyConstraint(
            ["method_id"], ["payment_methods.id"], name=op.f("fk_order_payments_method_id_payment_methods")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_order_payments_order_id_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"], name=op.f("fk_order_payments_refund_id_refunds")),
        sa.PrimaryKeyConstraint("order_id", "seq", name=op.f("pk_order_payments")),
    )
    op.create_table(
        "returned_items",
        sa.Column("order_id", sa.String(length=32), nullable=False),
        sa.Column("line_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("change_id", sa.String(length=40), nullable=True),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('return', 'exchange', 'refund')", name=op.f("ck_returned_items_kind")),
        sa.ForeignKeyConstraint(
            ["change_id"], ["order_changes.id"], name=op.f("fk_returned_items_change_id_order_changes")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_returned_items_order_id_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["refund_id"], ["refunds.id"], name=op.f("fk_returned_items_refund_id_refunds")),
        sa.PrimaryKeyConstraint("order_id", "line_no", name=op.f("pk_returned_items")),
    )
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("address", sa.JSON(), nullable=True))
    _order_lines()
    _orders()
    _payment_history()
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_check_constraint(
            "refunds_within_paid",
            "refunded_cents >= 0 AND promised_cents >= 0 AND refunded_cents + promised_cents <= paid_cents",
        )
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("line_nos", sa.JSON(), nullable=True))
        batch_op.drop_index("uq_refunds_one_live_per_order", sqlite_where=sa.text(f"status IN {LIVE}"))
        batch_op.create_index(
            "uq_refunds_one_open_per_order",
            ["order_id"],
            unique=True,
            sqlite_where=sa.text(f"status IN {OPEN}"),
            postgresql_where=sa.text(f"status IN {OPEN}"),
        )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("change_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_tickets_change_id_order_changes"), "order_changes", ["change_id"], ["id"]
        )


OPEN_CHANGES = "('awaiting_confirmation', 'pending_approval')"
LIVE = "('awaiting_confirmation', 'pending_approval', 'processing', 'processed')"
OPEN = "('awaiting_confirmation', 'pending_approval', 'processing')"
OLD_STATUSES = "status IN ('pending','shipped','delivered','cancelled')"
OLD_DELIVERED_AT = (
    "(status = 'delivered' AND delivered_at IS NOT NULL) OR (status <> 'delivered' AND delivered_at IS NULL)"
)
STATUSES = (
    "status IN ('pending', 'processed', 'shipped', 'delivered', 'cancelled', 'items_modified', "
    "'return_requested', 'exchange_requested')"
)
DELIVERED = "status IN ('delivered', 'return_requested', 'exchange_requested')"
DELIVERED_AT = f"({DELIVERED} AND delivered_at IS NOT NULL) OR (NOT {DELIVERED} AND delivered_at IS NULL)"


def _order_lines() -> None:
    """Each SKU ordered so far becomes a product with one variant (named and priced as its first
    line); the line's SKU is its variant's item id."""
    bind = op.get_bind()
    lines = bind.execute(sa.text("SELECT sku, name, unit_price_cents FROM order_items ORDER BY order_id, line_no"))
    first: dict[str, tuple[str, int]] = {}
    for sku, name, price in lines:
        first.setdefault(sku, (name, price))
    products = sa.table("products", sa.column("id", sa.String()), sa.column("name", sa.Text()))
    variants = sa.table(
        "variants",
        sa.column("item_id", sa.String()),
        sa.column("product_id", sa.String()),
        sa.column("options", sa.JSON()),
        sa.column("price_cents", sa.Integer()),
        sa.column("available", sa.Boolean()),
    )
    if first:
        op.bulk_insert(products, [{"id": sku, "name": name} for sku, (name, _) in first.items()])
        op.bulk_insert(
            variants,
            [
                {"item_id": sku, "product_id": sku, "options": {}, "price_cents": price, "available": True}
                for sku, (_, price) in first.items()
            ],
        )
    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.alter_column("sku", new_column_name="item_id", existing_type=sa.String(length=64))
        batch_op.add_column(sa.Column("product_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("options", sa.JSON(), nullable=True))
    op.execute("UPDATE order_items SET product_id = item_id, options = '{}'")
    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.alter_column("product_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("options", existing_type=sa.JSON(), nullable=False)
        batch_op.create_index(batch_op.f("ix_order_items_item_id"), ["item_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_order_items_item_id_variants"), "variants", ["item_id"], ["item_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_order_items_product_id_products"), "products", ["product_id"], ["id"]
        )


def _orders() -> None:
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("address", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("paid_cents", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("refunded_cents", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("promised_cents", sa.Integer(), server_default="0", nullable=False))
        batch_op.alter_column(
            "status", existing_type=sa.VARCHAR(length=16), type_=sa.String(length=24), existing_nullable=False
        )
        batch_op.drop_constraint(batch_op.f("ck_orders_status"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_orders_delivered_at"), type_="check")
        batch_op.create_check_constraint("status", STATUSES)
        batch_op.create_check_constraint("delivered_at", DELIVERED_AT)


LEDGER = sa.table(
    "order_payments",
    sa.column("order_id", sa.String()),
    sa.column("seq", sa.Integer()),
    sa.column("kind", sa.String()),
    sa.column("amount_cents", sa.Integer()),
    sa.column("refund_id", sa.String()),
    sa.column("created_at", storage.types.UTCDateTime()),
)


def _payment_history() -> None:
    """Each order's total charged when placed; each refund already sent (processing, processed, or
    failed and owed, as far as the total allows); a cancelled order's remaining total refunded."""
    bind = op.get_bind()
    orders = sa.table(
        "orders",
        sa.column("id", sa.String()),
        sa.column("status", sa.String()),
        sa.column("total_cents", sa.Integer()),
        sa.column("placed_at", storage.types.UTCDateTime()),
    )
    refunds = sa.table(
        "refunds",
        sa.column("id", sa.String()),
        sa.column("order_id", sa.String()),
        sa.column("amount_cents", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("created_at", storage.types.UTCDateTime()),
    )
    sent: dict[str, list[tuple[str, int, object]]] = {}
    for rid, oid, amount, at in bind.execute(
        sa.select(refunds.c.id, refunds.c.order_id, refunds.c.amount_cents, refunds.c.created_at)
        .where(refunds.c.status.in_(("processing", "processed", "failed")))
        .order_by(refunds.c.created_at, refunds.c.id)
    ):
        sent.setdefault(oid, []).append((rid, amount, at))
    rows: list[dict[str, object]] = []
    for oid, status, total, placed in bind.execute(sa.select(orders).order_by(orders.c.id)):
        history = [{"kind": "payment", "amount_cents": total, "refund_id": None, "created_at": placed}]
        left = total
        for rid, amount, at in sent.get(oid, []):
            if amount <= left:
                history.append({"kind": "refund", "amount_cents": amount, "refund_id": rid, "created_at": at})
                left -= amount
        if status == "cancelled" and left > 0:
            history.append({"kind": "refund", "amount_cents": left, "refund_id": None, "created_at": placed})
        rows.extend({"order_id": oid, "seq": n, **entry} for n, entry in enumerate(history, start=1))
    for start in range(0, len(rows), 1000):
        op.bulk_insert(LEDGER, rows[start : start + 1000])
    op.execute(
        "UPDATE orders SET "
        "paid_cents = (SELECT COALESCE(SUM(p.amount_cents), 0) FROM order_payments p "
        "WHERE p.order_id = orders.id AND p.kind = 'payment'), "
        "refunded_cents = (SELECT COALESCE(SUM(p.amount_cents), 0) FROM order_payments p "
        "WHERE p.order_id = orders.id AND p.kind = 'refund')"
    )


def downgrade() -> None:
    """Back to one refund per order and four order statuses (an order changed since reads as the
    nearest old status); fails if an order has two refunds paid."""
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_tickets_change_id_order_changes"), type_="foreignkey")
        batch_op.drop_column("change_id")
    with op.batch_alter_table("refunds", schema=None) as batch_op:
        batch_op.drop_index("uq_refunds_one_open_per_order", sqlite_where=sa.text(f"status IN {OPEN}"))
        batch_op.create_index(
            "uq_refunds_one_live_per_order",
            ["order_id"],
            unique=True,
            sqlite_where=sa.text(f"status IN {LIVE}"),
            postgresql_where=sa.text(f"status IN {LIVE}"),
        )
        batch_op.drop_column("line_nos")
    op.execute("UPDATE orders SET status = 'shipped' WHERE status = 'processed'")
    op.execute("UPDATE orders SET status = 'pending' WHERE status = 'items_modified'")
    op.execute("UPDATE orders SET status = 'delivered' WHERE status IN ('return_requested', 'exchange_requested')")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_orders_refunds_within_paid"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_orders_status"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_orders_delivered_at"), type_="check")
        batch_op.alter_column(
            "status", existing_type=sa.String(length=24), type_=sa.VARCHAR(length=16), existing_nullable=False
        )
        batch_op.drop_column("promised_cents")
        batch_op.drop_column("refunded_cents")
        batch_op.drop_column("paid_cents")
        batch_op.drop_column("address")
        batch_op.create_check_constraint("status", OLD_STATUSES)
        batch_op.create_check_constraint("delivered_at", OLD_DELIVERED_AT)
    with op.batch_alter_table("order_items", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_order_items_product_id_products"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_order_items_item_id_variants"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_order_items_item_id"))
        batch_op.drop_column("options")
        batch_op.drop_column("product_id")
        batch_op.alter_column("item_id", new_column_name="sku", existing_type=sa.String(length=64))
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("address")
    op.drop_table("returned_items")
    op.drop_table("order_payments")
    with op.batch_alter_table("order_changes", schema=None) as batch_op:
        batch_op.drop_index("uq_order_changes_one_open", sqlite_where=sa.text(f"status IN {OPEN_CHANGES}"))
        batch_op.drop_index(batch_op.f("ix_order_changes_order_id"))
        batch_op.drop_index("ix_order_changes_customer")
    op.drop_table("order_changes")
    op.drop_table("fulfilments")
    with op.batch_alter_table("variants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_variants_product_id"))
    op.drop_table("variants")
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_methods_customer_id"))
    op.drop_table("payment_methods")
    op.drop_table("products")
