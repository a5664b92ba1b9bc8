"""security ticket: a hidden security ticket is its own, beside the session's visible one

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 01:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

OLD = "status <> 'resolved'"
NEW = "status <> 'resolved' AND reason <> 'security'"


def _index(where: str) -> None:
    op.create_index(
        "uq_tickets_one_unresolved_per_session",
        "tickets",
        ["session_id"],
        unique=True,
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def upgrade() -> None:
    op.drop_index("uq_tickets_one_unresolved_per_session", table_name="tickets")
    _index(NEW)


def downgrade() -> None:
    op.drop_index("uq_tickets_one_unresolved_per_session", table_name="tickets")
    _index(OLD)
