"""web: the website chat API's turns, their event log, per-identity rate limits

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 07:22:54.209408
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_rate_limits",
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("window_start", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("subject", name=op.f("pk_web_rate_limits")),
    )
    op.create_table(
        "web_turns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("lease_owner", sa.String(length=120), nullable=True),
        sa.Column("lease_expires_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('message', 'confirm', 'cancel')", name=op.f("ck_web_turns_kind")),
        sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_web_turns_status")),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_web_turns_session_id_sessions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_turns")),
        sa.UniqueConstraint("key", name=op.f("uq_web_turns_key")),
    )
    with op.batch_alter_table("web_turns", schema=None) as batch_op:
        batch_op.create_index("ix_web_turns_session", ["session_id", "id"], unique=False)
        batch_op.create_index(
            "uq_web_turns_one_running_per_session",
            ["session_id"],
            unique=True,
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )

    op.create_table(
        "web_turn_events",
        sa.Column("turn_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('status', 'reply', 'escalation', 'confirmation', 'done', 'error')",
            name=op.f("ck_web_turn_events_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["turn_id"], ["web_turns.id"], name=op.f("fk_web_turn_events_turn_id_web_turns"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("turn_id", "seq", name=op.f("pk_web_turn_events")),
    )


def downgrade() -> None:
    op.drop_table("web_turn_events")
    with op.batch_alter_table("web_turns", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_web_turns_one_running_per_session",
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        )
        batch_op.drop_index("ix_web_turns_session")

    op.drop_table("web_turns")
    op.drop_table("web_rate_limits")
