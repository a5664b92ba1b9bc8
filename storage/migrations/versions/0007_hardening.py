"""ticket_events (each ticket's history, for `show N`); retention indexes; web_turns.client

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ticket_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=2), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=120), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('opened', 'raised', 'updated', 'claimed', 'released', 'resolved')",
            name=op.f("ck_ticket_events_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["ticket_id"], ["tickets.id"], name=op.f("fk_ticket_events_ticket_id_tickets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_events")),
    )
    with op.batch_alter_table("ticket_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_events_ticket_id"), ["ticket_id"], unique=False)
    # what housekeeping's retention deletes by (status, time), and the anonymous ticket quota's key
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.create_index("ix_inbox_done", ["status", "done_at"], unique=False)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_posted", ["status", "posted_at"], unique=False)
    with op.batch_alter_table("web_turns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_web_turns_finished", ["status", "finished_at"], unique=False)
    with op.batch_alter_table("web_rate_limits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_rate_limits_window_start"), ["window_start"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("web_rate_limits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_rate_limits_window_start"))
    with op.batch_alter_table("web_turns", schema=None) as batch_op:
        batch_op.drop_index("ix_web_turns_finished")
        batch_op.drop_column("client")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_posted")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_index("ix_inbox_done")
    with op.batch_alter_table("ticket_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_events_ticket_id"))
    op.drop_table("ticket_events")
