"""The typed ORM schema. Alembic migrations under `storage/migrations` produce exactly this
(a test runs autogenerate against a migrated database and expects no difference).

Money is integer cents (`*_cents`); every time column is `UTCDateTime`.

The catalogue is products with variants (an order line names its variant by `item_id`); a
customer has payment methods (a gift card carries its balance) and a default address; an order
has its lines, shipping address, fulfilments and payment history (`order_payments`: every charge
and refund with its method). The order's money totals are kept beside it so the database itself
refuses a refund beyond what was paid (`ck_orders_refunds_within_paid`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from storage.states import (
    OPEN_CHANGES,
    OPEN_REFUNDS,
    UNDELIVERED_OUTBOX,
    UNFINISHED_INBOX,
    InboxStatus,
    OrderChangeStatus,
    OrderStatus,
    OutboxStatus,
    RefundStatus,
    TicketStatus,
    WebTurnStatus,
)
from storage.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ORDER_STATUSES = tuple(OrderStatus)
REFUND_STATUSES = tuple(RefundStatus)
TICKET_STATUSES = tuple(TicketStatus)
PRIORITIES = ("P1", "P2", "P3")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# An address, as stored on a customer (their default) and an order (where it ships):
# {"address1", "address2", "city", "state", "country", "zip"}, every value a string.
Address = dict[str, str]
PAYMENT_KINDS = ("credit_card", "paypal", "gift_card")
LEDGER_KINDS = ("payment", "refund")
CHANGE_KINDS = (
    "cancel",
    "modify_items",
    "modify_address",
    "modify_payment",
    "return",
    "exchange",
    "user_address",
)
RETURN_KINDS = ("return", "exchange", "refund")
DELIVERED = ("delivered", "return_requested", "exchange_requested")  # states.DELIVERED_ORDERS


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    address: Mapped[Address | None] = mapped_column(JSON)

    orders: Mapped[list[Order]] = relationship(back_populates="customer", lazy="raise")


class Product(Base):
    """A kind of product (a T-shirt); its variants are what can be ordered (blue, size M)."""

    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)

    variants: Mapped[list[Variant]] = relationship(back_populates="product", lazy="raise", order_by="Variant.item_id")


class Variant(Base):
    """One orderable item of a product: its options (colour, size…), price and availability."""

    __tablename__ = "variants"
    __table_args__ = (CheckConstraint("price_cents >= 0", name="price_nonneg"),)

    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"), index=True)
    options: Mapped[dict[str, str]] = mapped_column(JSON)
    price_cents: Mapped[int] = mapped_column(Integer)
    available: Mapped[bool] = mapped_column()

    product: Mapped[Product] = relationship(back_populates="variants", lazy="raise")


class PaymentMethod(Base):
    """A customer's way of paying: a card (brand, last four digits), PayPal, or a gift card whose
    balance the shop keeps (and the database keeps from going below zero)."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        CheckConstraint(_in("kind", PAYMENT_KINDS), name="kind"),
        CheckConstraint(
            "(kind = 'gift_card' AND balance_cents IS NOT NULL AND balance_cents >= 0) "
            "OR (kind <> 'gift_card' AND balance_cents IS NULL)",
            name="balance",
        ),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    brand: Mapped[str | None] = mapped_column(String(32))
    last_four: Mapped[str | None] = mapped_column(String(4))
    balance_cents: Mapped[int | None] = mapped_column(Integer)


class Order(Base):
    """An order and its money: `paid_cents` is every charge in its payment history, `refunded_cents`
    every refund there, `promised_cents` the refunds agreed and paid later (a return's, refunded
    when the items arrive). Together they never exceed what was paid."""

    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(_in("status", ORDER_STATUSES), name="status"),
        CheckConstraint("total_cents >= 0", name="total_nonneg"),
        CheckConstraint(
            f"({_in('status', DELIVERED)} AND delivered_at IS NOT NULL) "
            f"OR (NOT {_in('status', DELIVERED)} AND delivered_at IS NULL)",
            name="delivered_at",
        ),
        CheckConstraint(
            "refunded_cents >= 0 AND promised_cents >= 0 AND refunded_cents + promised_cents <= paid_cents",
            name="refunds_within_paid",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(24))
    total_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    address: Mapped[Address | None] = mapped_column(JSON)
    paid_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    refunded_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    promised_cents: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    customer: Mapped[Customer] = relationship(back_populates="orders", lazy="raise")
    items: Mapped[list[OrderItem]] = relationship(back_populates="order", lazy="raise", order_by="OrderItem.line_no")


class OrderFormat(Base):
    """The shape of stored order ids (e.g. `ORD-<d4>`, `<d4>`), recorded by the import: how a
    token is recognised as an order number of this shop's format (see storage.order_formats)."""

    __tablename__ = "order_formats"

    shape: Mapped[str] = mapped_column(String(200), primary_key=True)


class OrderItem(Base):
    """An order line: its variant (`item_id`) with the product and options as ordered, and the
    price paid for each unit."""

    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_pos"),
        CheckConstraint("unit_price_cents >= 0", name="price_nonneg"),
    )

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    item_id: Mapped[str] = mapped_column(ForeignKey("variants.item_id"), index=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("products.id"))
    name: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, str]] = mapped_column(JSON)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="items", lazy="raise")


class Fulfilment(Base):
    """A shipment of some of an order's items, with its tracking numbers."""

    __tablename__ = "fulfilments"

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    tracking_ids: Mapped[list[str]] = mapped_column(JSON)
    item_ids: Mapped[list[str]] = mapped_column(JSON)


class OrderPayment(Base):
    """An order's payment history, in order: each charge and refund, with the method it used
    (None: the order's original method, which an older import did not record)."""

    __tablename__ = "order_payments"
    __table_args__ = (
        CheckConstraint(_in("kind", LEDGER_KINDS), name="kind"),
        CheckConstraint("amount_cents >= 0", name="amount_nonneg"),
    )

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(8))
    amount_cents: Mapped[int] = mapped_column(Integer)
    method_id: Mapped[str | None] = mapped_column(ForeignKey("payment_methods.id"))
    change_id: Mapped[str | None] = mapped_column(ForeignKey("order_changes.id"))
    refund_id: Mapped[str | None] = mapped_column(ForeignKey("refunds.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OrderChange(Base):
    """A change to an order (or to a customer's own address) asked for by a tool: prepared with
    exactly what will change and the money (`plan`), applied once its customer confirms it (and,
    over the limit, staff approve it). `args` are the tool's arguments, from which a confirmation
    plans again: a change whose plan no longer holds is refused, never applied differently."""

    __tablename__ = "order_changes"
    __table_args__ = (
        CheckConstraint(_in("kind", CHANGE_KINDS), name="kind"),
        CheckConstraint(_in("status", tuple(OrderChangeStatus)), name="status"),
        CheckConstraint("refund_cents >= 0 AND charge_cents >= 0", name="money_nonneg"),
        Index(
            "uq_order_changes_one_open",
            "target",
            "kind",
            unique=True,
            sqlite_where=text(_in("status", OPEN_CHANGES)),
            postgresql_where=text(_in("status", OPEN_CHANGES)),
        ),
        Index("ix_order_changes_customer", "customer_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(24))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"), index=True)
    # what is changed: the order's id, or the customer's own for their default address
    target: Mapped[str] = mapped_column(String(64))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    # money back to the customer net of what the change charges, and the charge net of refunds
    refund_cents: Mapped[int] = mapped_column(Integer)
    charge_cents: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(120))
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id"))
    decided_by: Mapped[str | None] = mapped_column(String(120))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ReturnedItem(Base):
    """An order line given back (returned, exchanged, or refunded by item): at most once, ever."""

    __tablename__ = "returned_items"
    __table_args__ = (CheckConstraint(_in("kind", RETURN_KINDS), name="kind"),)

    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    change_id: Mapped[str | None] = mapped_column(ForeignKey("order_changes.id"))
    refund_id: Mapped[str | None] = mapped_column(ForeignKey("refunds.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChatSession(Base):
    """One support conversation: a Slack thread, a shell run, an MCP connection, a web chat.

    The actor is fixed by the channel that opened it, never by anything typed into it.
    """

    __tablename__ = "sessions"
    __table_args__ = (CheckConstraint(_in("actor_kind", ("customer", "unverified", "staff")), name="actor_kind"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    actor_kind: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    staff_id: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # the agent's bookkeeping: outcome for FCR, token budget, the clarification rule
    outcome: Mapped[str | None] = mapped_column(String(24))
    outcome_priority: Mapped[str | None] = mapped_column(String(2))
    tokens_used: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failed_rounds: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    turns: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # set when a person took the conversation over; the bot stays quiet until the ticket is resolved
    handed_off_by: Mapped[str | None] = mapped_column(String(64))
    # the customer's language as the channel knows it (Slack users.info locale, Accept-Language), if it does
    locale: Mapped[str | None] = mapped_column(String(16))


class Message(Base):
    """Conversation history in the Messages API's own shape (role + content blocks)."""

    __tablename__ = "messages"
    __table_args__ = (CheckConstraint(_in("role", ("user", "assistant")), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # True for the customer's own words (a turn boundary where history may be trimmed)
    is_customer_text: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    tokens_est: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ModelCall(Base):
    """Usage of every model call, as the API reported it."""

    __tablename__ = "model_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(64))
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    input_tokens: Mapped[int] = mapped_column(Integer)
    cache_read_tokens: Mapped[int] = mapped_column(Integer)
    cache_write_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SessionOrder(Base):
    """Orders looked up in a session: `process_refund` only acts on these."""

    __tablename__ = "session_orders"

    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    looked_up_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint(_in("status", REFUND_STATUSES), name="status"),
        CheckConstraint("amount_cents > 0", name="amount_pos"),
        Index(
            "uq_refunds_one_open_per_order",
            "order_id",
            unique=True,
            sqlite_where=text(_in("status", OPEN_REFUNDS)),
            postgresql_where=text(_in("status", OPEN_REFUNDS)),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"), index=True)
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(120))
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id"), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(120))
    gateway_ref: Mapped[str | None] = mapped_column(String(120))
    # the order lines it refunds, if it names items (None: an amount)
    line_nos: Mapped[list[int] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Payout(Base):
    """The default payment gateway's ledger: one row per idempotency key (the refund id)."""

    __tablename__ = "payouts"

    idempotency_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


OPEN_VISIBLE_TICKET = "status <> 'resolved' AND reason <> 'security'"


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(_in("status", TICKET_STATUSES), name="status"),
        CheckConstraint(_in("priority", PRIORITIES), name="priority"),
        CheckConstraint("status <> 'claimed' OR claimed_by IS NOT NULL", name="claimed_by"),
        CheckConstraint("claimed_kind IS NULL OR claimed_kind IN ('staff', 'colleague')", name="claimed_kind"),
        # a session has at most one unresolved ticket its customer may see, escalating again updates
        # it; a hidden security ticket (probes of other customers' orders) is its own, beside it
        Index(
            "uq_tickets_one_unresolved_per_session",
            "session_id",
            unique=True,
            sqlite_where=text(OPEN_VISIBLE_TICKET),
            postgresql_where=text(OPEN_VISIBLE_TICKET),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    priority: Mapped[str] = mapped_column(String(2))
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    order_id: Mapped[str | None] = mapped_column(String(32))
    refund_id: Mapped[str | None] = mapped_column(ForeignKey("refunds.id"))
    change_id: Mapped[str | None] = mapped_column(ForeignKey("order_changes.id"))
    summary: Mapped[str] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # who claimed it: a member of staff, or a colleague who took the thread over (any staff member may
    # resolve or reassign a colleague's ticket)
    claimed_kind: Mapped[str | None] = mapped_column(String(16))
    # what a customer may be shown instead of the id (ids are one global sequence: an oracle)
    public_ref: Mapped[str | None] = mapped_column(String(16), unique=True)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # where the staff channel shows it (set by the Slack face) and when it was last announced (SLA)
    slack_channel: Mapped[str | None] = mapped_column(String(32))
    slack_ts: Mapped[str | None] = mapped_column(String(64))
    announced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    rendered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


TICKET_EVENT_KINDS = ("opened", "raised", "updated", "claimed", "released", "resolved")


class TicketEvent(Base):
    """A ticket's history, one row per escalation into it and per staff transition: what `show N`
    prints, newest last."""

    __tablename__ = "ticket_events"
    __table_args__ = (CheckConstraint(_in("kind", TICKET_EVENT_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(2))
    reason: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(120))
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CustomerLink(Base):
    """A channel identity (e.g. Slack team + user) bound to a customer: identity comes from here."""

    __tablename__ = "customer_links"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    linked_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_actor_time", "actor", "created_at"),)  # an actor's recent outcomes

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str | None] = mapped_column(String(40), index=True)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64))
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


INBOX_STATUSES = tuple(InboxStatus)
INBOX_FACES = ("slack", "web")
INBOX_KINDS = ("message", "confirm", "cancel")
LIVE_INBOX = _in("status", UNFINISHED_INBOX)


class InboxItem(Base):
    """Work for the bot, stored before the sender is told it arrived; done once, in order per
    conversation, under a lease. Every face's work queues here: a Slack message or button click
    (stored before Slack is acknowledged), a website chat turn.

    `conversation` orders the work (a Slack thread, a web session). Slack rows are unique on the
    envelope's event_id and on (channel, ts): a retry and the app_mention twin of a message both
    land on an existing row and cause no new work. `attempts` numbers the leases taken: a holder
    proves it still holds the lease with it (fencing).
    """

    __tablename__ = "inbox"
    __table_args__ = (
        CheckConstraint(_in("status", INBOX_STATUSES), name="status"),
        CheckConstraint(_in("face", INBOX_FACES), name="face"),
        CheckConstraint(_in("kind", INBOX_KINDS), name="kind"),
        UniqueConstraint("channel", "ts", name="uq_inbox_channel_ts"),
        # only live rows are ever scanned by the queue, whatever the history's size
        Index("ix_inbox_live", "id", sqlite_where=text(LIVE_INBOX), postgresql_where=text(LIVE_INBOX)),
        Index(
            "ix_inbox_live_conversation",
            "conversation",
            "id",
            sqlite_where=text(LIVE_INBOX),
            postgresql_where=text(LIVE_INBOX),
        ),
        Index("ix_inbox_done", "status", "done_at"),  # retention
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    face: Mapped[str] = mapped_column(String(16), default="slack", server_default="slack")
    kind: Mapped[str] = mapped_column(String(16), default="message", server_default="message")
    conversation: Mapped[str] = mapped_column(String(200))
    session_id: Mapped[str | None] = mapped_column(String(40))
    event_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    channel: Mapped[str | None] = mapped_column(String(32))
    ts: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(32))
    user_team: Mapped[str | None] = mapped_column(String(32))
    installing_team: Mapped[str | None] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=InboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


OUTBOX_STATUSES = tuple(OutboxStatus)
OUTBOX_KINDS = ("reply", "confirmation", "notice", "staff_reply", "apology", "ephemeral", "relay", "alert")


class OutboxMessage(Base):
    """The outgoing message log: everything said to a customer (and to staff about them), written
    by the desk before anything is delivered. Each face delivers its own rows exactly once: Slack
    posts them into the thread (under a delivery lease, fenced, with metadata naming the row), the
    website streams them, the shell prints them.

    `inbox_id` and `seq` tie a turn's replies to the work item that wrote them; rows written by an
    act outside a turn (a staff reply, an approval notice) have none. `channel`/`thread_ts` are
    Slack's address for Slack sessions and for the staff channel (relays and alerts).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        CheckConstraint(_in("status", OUTBOX_STATUSES), name="status"),
        CheckConstraint(_in("kind", OUTBOX_KINDS), name="kind"),
        UniqueConstraint("inbox_id", "seq", name="uq_outbox_inbox_seq"),
        Index("ix_outbox_session", "session_id", "id"),
        Index(
            "ix_outbox_undelivered",
            "id",
            sqlite_where=text(_in("status", UNDELIVERED_OUTBOX)),
            postgresql_where=text(_in("status", UNDELIVERED_OUTBOX)),
        ),
        Index("ix_outbox_posted", "status", "posted_at"),  # retention
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str | None] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("inbox.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    kind: Mapped[str] = mapped_column(String(24), default="reply", server_default="reply")
    author: Mapped[str] = mapped_column(String(120), default="bot", server_default="bot")
    text: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    channel: Mapped[str | None] = mapped_column(String(32))
    thread_ts: Mapped[str | None] = mapped_column(String(32))
    blocks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    ephemeral_user: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    lease_owner: Mapped[str | None] = mapped_column(String(120))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    slack_ts: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


WEB_TURN_KINDS = ("message", "confirm", "cancel")
WEB_TURN_STATUSES = tuple(WebTurnStatus)
WEB_EVENT_KINDS = ("status", "reply", "escalation", "confirmation", "done", "error")


class WebTurn(Base):
    """A website chat request (a message, or a refund's Confirm/Cancel) and the turn that answers it.

    The work itself is an inbox item (`inbox_id`): the shared queue orders a session's turns and
    leases them. `key` is the opaque id the API shows; `id` only orders; `status` is what the
    visitor may see of it.
    """

    __tablename__ = "web_turns"
    __table_args__ = (
        CheckConstraint(_in("kind", WEB_TURN_KINDS), name="kind"),
        CheckConstraint(_in("status", WEB_TURN_STATUSES), name="status"),
        Index("ix_web_turns_session", "session_id", "id"),
        Index("ix_web_turns_finished", "status", "finished_at"),  # retention
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    inbox_id: Mapped[int | None] = mapped_column(ForeignKey("inbox.id", ondelete="SET NULL"), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    refund_id: Mapped[str | None] = mapped_column(String(40))
    # a hash of the anonymous visitor's client address: its new-ticket quota (None: not anonymous)
    client: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class WebTurnEvent(Base):
    """What a web turn showed the customer, stored as it happened: the SSE stream replays these."""

    __tablename__ = "web_turn_events"
    __table_args__ = (CheckConstraint(_in("kind", WEB_EVENT_KINDS), name="kind"),)

    turn_id: Mapped[int] = mapped_column(ForeignKey("web_turns.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebRateLimit(Base):
    """A fixed-window request counter per web identity, shared by every replica."""

    __tablename__ = "web_rate_limits"

    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    count: Mapped[int] = mapped_column(Integer)


class SlackPace(Base):
    """A token bucket per Slack method (and channel, for per-channel limits) that every replica
    draws on (PostgreSQL), so that together they keep to Slack's published limits."""

    __tablename__ = "slack_pace"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UTCDateTime())


ARTICLE_SOURCES = ("markdown", "html", "zendesk", "ticket")
ARTICLE_STATUSES = ("published", "draft")


class Article(Base):
    """A help-center article. `source_key` is what makes import idempotent: `zendesk:ID` for a
    Zendesk export, `url:URL` for Markdown and HTML files, `ticket:N` for a draft saved from a ticket."""

    __tablename__ = "kb_articles"
    __table_args__ = (
        CheckConstraint(_in("source", ARTICLE_SOURCES), name="source"),
        CheckConstraint(_in("status", ARTICLE_STATUSES), name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    source_key: Mapped[str] = mapped_column(String(1100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    url: Mapped[str] = mapped_column(String(1000))
    locale: Mapped[str] = mapped_column(String(16))
    tags: Mapped[list[str]] = mapped_column(JSON)
    body: Mapped[str] = mapped_column(Text)  # the article as plain text with its headings, for `kb show`
    status: Mapped[str] = mapped_column(String(16))
    content_hash: Mapped[str] = mapped_column(String(64))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), unique=True)
    source_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Passage(Base):
    """One section of an article (split at its headings): what search finds and a reply cites.

    It repeats its article's title, locale and published state so the search index filters and
    shows it without a join. `fts_head`/`fts_body` are the SQLite index's input (the words analyzed
    for the locale, see storage.analysis); PostgreSQL builds its own tsvector column (`kb_fts`,
    created by the migration, outside this model) and leaves them empty.
    """

    __tablename__ = "kb_passages"
    __table_args__ = (
        UniqueConstraint("article_id", "position", name="uq_kb_passages_article_position"),
        Index("ix_kb_passages_locale_published", "locale", "published"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    article_id: Mapped[int] = mapped_column(ForeignKey("kb_articles.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(300))
    heading: Mapped[str | None] = mapped_column(String(300))
    url: Mapped[str] = mapped_column(String(1100))  # the article's URL with the heading's anchor
    locale: Mapped[str] = mapped_column(String(16))
    published: Mapped[bool] = mapped_column()
    text: Mapped[str] = mapped_column(Text)
    fts_head: Mapped[str | None] = mapped_column(Text)
    fts_body: Mapped[str | None] = mapped_column(Text)


class HelpAnswer(Base):
    """A turn that searched the help center: whether the reply cited an article (which ones), and
    whether the session was escalated afterwards (set by tools.tickets.open_or_update)."""

    __tablename__ = "help_answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    answered: Mapped[bool] = mapped_column()
    article_ids: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
