"""desk: one queue, the outgoing message log, ticket handoff

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 22:37:33.190346
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("face", sa.String(length=16), server_default="slack", nullable=False))
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="message", nullable=False))
        batch_op.add_column(sa.Column("conversation", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("session_id", sa.String(length=40), nullable=True))
        batch_op.alter_column("channel", existing_type=sa.VARCHAR(length=32), nullable=True)
        batch_op.alter_column("ts", existing_type=sa.VARCHAR(length=32), nullable=True)
        batch_op.alter_column("thread_ts", existing_type=sa.VARCHAR(length=32), nullable=True)
        batch_op.alter_column("user_id", existing_type=sa.VARCHAR(length=32), nullable=True)
        batch_op.drop_index(batch_op.f("ix_inbox_claimable"))
        batch_op.drop_index(batch_op.f("ix_inbox_thread"))
        batch_op.create_check_constraint("face", "face IN ('slack', 'web')")
        batch_op.create_check_constraint("kind", "kind IN ('message', 'confirm', 'cancel')")
        batch_op.create_index(
            "ix_inbox_live",
            ["id"],
            unique=False,
            sqlite_where=sa.text("status IN ('pending', 'working')"),
            postgresql_where=sa.text("status IN ('pending', 'working')"),
        )
        batch_op.create_index(
            "ix_inbox_live_conversation",
            ["conversation", "id"],
            unique=False,
            sqlite_where=sa.text("status IN ('pending', 'working')"),
            postgresql_where=sa.text("status IN ('pending', 'working')"),
        )

    op.execute("UPDATE inbox SET conversation = 'slack:' || channel || ':' || thread_ts")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.alter_column("conversation", existing_type=sa.String(length=200), nullable=False)

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_status"), type_="check")
        batch_op.create_check_constraint("status", "status IN ('pending', 'posting', 'posted', 'skipped')")
        batch_op.add_column(sa.Column("session_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("kind", sa.String(length=24), server_default="reply", nullable=False))
        batch_op.add_column(sa.Column("author", sa.String(length=120), server_default="bot", nullable=False))
        batch_op.add_column(sa.Column("data", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_check_constraint(
            "kind",
            "kind IN ('reply', 'confirmation', 'notice', 'staff_reply', 'apology', 'ephemeral', 'relay', 'alert')",
        )
        batch_op.alter_column("inbox_id", existing_type=sa.INTEGER(), nullable=True)
        batch_op.alter_column("seq", existing_type=sa.INTEGER(), server_default="0", existing_nullable=False)
        batch_op.alter_column("channel", existing_type=sa.VARCHAR(length=32), nullable=True)
        batch_op.alter_column("thread_ts", existing_type=sa.VARCHAR(length=32), nullable=True)
        batch_op.create_index("ix_outbox_session", ["session_id", "id"], unique=False)
        batch_op.create_index(
            "ix_outbox_undelivered",
            ["id"],
            unique=False,
            sqlite_where=sa.text("status IN ('pending', 'posting')"),
            postgresql_where=sa.text("status IN ('pending', 'posting')"),
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_outbox_session_id_sessions"), "sessions", ["session_id"], ["id"], ondelete="CASCADE"
        )

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("public_ref", sa.String(length=16), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_tickets_public_ref"), ["public_ref"])
        batch_op.create_check_constraint(
            "claimed_kind", "claimed_kind IS NULL OR claimed_kind IN ('staff', 'colleague')"
        )
    # tickets claimed before colleagues were told apart were claimed by staff buttons or handoffs
    op.execute("UPDATE tickets SET claimed_kind = 'staff' WHERE claimed_by IS NOT NULL")
    conn = op.get_bind()
    for (ticket_id,) in conn.execute(sa.text("SELECT id FROM tickets WHERE public_ref IS NULL")).all():
        ref = "T-" + secrets.token_hex(5).upper()
        conn.execute(sa.text("UPDATE tickets SET public_ref = :ref WHERE id = :id"), {"ref": ref, "id": ticket_id})

    with op.batch_alter_table("web_turns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inbox_id", sa.Integer(), nullable=True))
        batch_op.drop_index(
            batch_op.f("uq_web_turns_one_running_per_session"),
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )
        batch_op.create_unique_constraint(batch_op.f("uq_web_turns_inbox_id"), ["inbox_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_web_turns_inbox_id_inbox"), "inbox", ["inbox_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("lease_expires_at")


def downgrade() -> None:
    with op.batch_alter_table("web_turns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_expires_at", storage.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("lease_owner", sa.VARCHAR(length=120), nullable=True))
        batch_op.drop_constraint(batch_op.f("fk_web_turns_inbox_id_inbox"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("uq_web_turns_inbox_id"), type_="unique")
        batch_op.create_index(
            batch_op.f("uq_web_turns_one_running_per_session"),
            ["session_id"],
            unique=True,
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )
        batch_op.drop_column("inbox_id")

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_tickets_claimed_kind"), type_="check")
        batch_op.drop_constraint(batch_op.f("uq_tickets_public_ref"), type_="unique")
        batch_op.drop_column("public_ref")
        batch_op.drop_column("claimed_kind")

    op.execute("DELETE FROM outbox WHERE inbox_id IS NULL OR channel IS NULL")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_outbox_kind"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_outbox_status"), type_="check")
        batch_op.create_check_constraint("status", "status IN ('pending', 'posting', 'posted')")
        batch_op.drop_constraint(batch_op.f("fk_outbox_session_id_sessions"), type_="foreignkey")
        batch_op.drop_index(
            "ix_outbox_undelivered",
            sqlite_where=sa.text("status IN ('pending', 'posting')"),
            postgresql_where=sa.text("status IN ('pending', 'posting')"),
        )
        batch_op.drop_index("ix_outbox_session")
        batch_op.alter_column("thread_ts", existing_type=sa.VARCHAR(length=32), nullable=False)
        batch_op.alter_column("channel", existing_type=sa.VARCHAR(length=32), nullable=False)
        batch_op.alter_column("seq", existing_type=sa.INTEGER(), server_default=None, existing_nullable=False)
        batch_op.alter_column("inbox_id", existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column("attempt")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("lease_owner")
        batch_op.drop_column("data")
        batch_op.drop_column("author")
        batch_op.drop_column("kind")
        batch_op.drop_column("session_id")

    op.execute("DELETE FROM inbox WHERE face <> 'slack'")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_inbox_kind"), type_="check")
        batch_op.drop_constraint(batch_op.f("ck_inbox_face"), type_="check")
        batch_op.drop_index(
            "ix_inbox_live_conversation",
            sqlite_where=sa.text("status IN ('pending', 'working')"),
            postgresql_where=sa.text("status IN ('pending', 'working')"),
        )
        batch_op.drop_index(
            "ix_inbox_live",
            sqlite_where=sa.text("status IN ('pending', 'working')"),
            postgresql_where=sa.text("status IN ('pending', 'working')"),
        )
        batch_op.create_index(batch_op.f("ix_inbox_thread"), ["channel", "thread_ts", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_inbox_claimable"), ["status", "lease_expires_at"], unique=False)
        batch_op.alter_column("user_id", existing_type=sa.VARCHAR(length=32), nullable=False)
        batch_op.alter_column("thread_ts", existing_type=sa.VARCHAR(length=32), nullable=False)
        batch_op.alter_column("ts", existing_type=sa.VARCHAR(length=32), nullable=False)
        batch_op.alter_column("channel", existing_type=sa.VARCHAR(length=32), nullable=False)
        batch_op.drop_column("session_id")
        batch_op.drop_column("conversation")
        batch_op.drop_column("kind")
        batch_op.drop_column("face")
