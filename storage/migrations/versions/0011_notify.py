"""notify: PostgreSQL triggers that wake other replicas (storage.notify)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 07:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

UP = [
    """CREATE FUNCTION supportbot_notify_inbox() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('supportbot_inbox', ''); RETURN NULL; END $$""",
    """CREATE TRIGGER inbox_notify AFTER INSERT OR UPDATE OF status ON inbox FOR EACH ROW
    WHEN (NEW.status <> 'working') EXECUTE FUNCTION supportbot_notify_inbox()""",
    """CREATE FUNCTION supportbot_notify_turn() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('supportbot_web', 'turn:' || NEW.turn_id); RETURN NULL; END $$""",
    """CREATE TRIGGER web_turn_events_notify AFTER INSERT ON web_turn_events FOR EACH ROW
    EXECUTE FUNCTION supportbot_notify_turn()""",
    """CREATE FUNCTION supportbot_notify_session() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('supportbot_web', 'session:' || NEW.session_id); RETURN NULL; END $$""",
    """CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH ROW
    WHEN (NEW.session_id IS NOT NULL) EXECUTE FUNCTION supportbot_notify_session()""",
]
DOWN = [
    "DROP TRIGGER IF EXISTS outbox_notify ON outbox",
    "DROP FUNCTION IF EXISTS supportbot_notify_session()",
    "DROP TRIGGER IF EXISTS web_turn_events_notify ON web_turn_events",
    "DROP FUNCTION IF EXISTS supportbot_notify_turn()",
    "DROP TRIGGER IF EXISTS inbox_notify ON inbox",
    "DROP FUNCTION IF EXISTS supportbot_notify_inbox()",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # one SQLite process wakes its own waiters
    for statement in UP:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in DOWN:
        op.execute(statement)
