"""kb: help-center articles and passages, their search indexes, help answers, session locale

SQLite: an FTS5 external-content index over the analyzed passage columns (kept by triggers, published
passages only), its fts5vocab view, and the term list copied from it for the spelling pass.
PostgreSQL: a generated, language-configured tsvector with a partial GIN index, and the pg_trgm
indexed term list for the spelling pass. See storage/search.py.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import storage.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# locale -> PostgreSQL text search configuration (storage.analysis.PG_CONFIGS at the time of writing)
PG_CONFIGS = {
    "en": "english",
    "es": "spanish",
    "de": "german",
    "fr": "french",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "fi": "finnish",
}

SQLITE_UP = [
    "CREATE VIRTUAL TABLE kb_fts_passages USING fts5(fts_head, fts_body, content='kb_passages', "
    "content_rowid='id', tokenize='unicode61 remove_diacritics 2')",
    "CREATE VIRTUAL TABLE kb_fts_vocab USING fts5vocab(kb_fts_passages, row)",
    "CREATE TABLE kb_fts_terms (term TEXT PRIMARY KEY, docs INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE kb_fts_stats (name VARCHAR(32) PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TRIGGER kb_fts_passages_insert AFTER INSERT ON kb_passages WHEN new.published BEGIN
        INSERT INTO kb_fts_passages(rowid, fts_head, fts_body) VALUES (new.id, new.fts_head, new.fts_body);
    END""",
    """CREATE TRIGGER kb_fts_passages_delete AFTER DELETE ON kb_passages WHEN old.published BEGIN
        INSERT INTO kb_fts_passages(kb_fts_passages, rowid, fts_head, fts_body)
        VALUES ('delete', old.id, old.fts_head, old.fts_body);
    END""",
    """CREATE TRIGGER kb_fts_passages_update AFTER UPDATE ON kb_passages BEGIN
        INSERT INTO kb_fts_passages(kb_fts_passages, rowid, fts_head, fts_body)
        SELECT 'delete', old.id, old.fts_head, old.fts_body WHERE old.published;
        INSERT INTO kb_fts_passages(rowid, fts_head, fts_body)
        SELECT new.id, new.fts_head, new.fts_body WHERE new.published;
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS kb_fts_passages_update",
    "DROP TRIGGER IF EXISTS kb_fts_passages_delete",
    "DROP TRIGGER IF EXISTS kb_fts_passages_insert",
    "DROP TABLE IF EXISTS kb_fts_stats",
    "DROP TABLE IF EXISTS kb_fts_terms",
    "DROP TABLE IF EXISTS kb_fts_vocab",
    "DROP TABLE IF EXISTS kb_fts_passages",
]


def _pg_config() -> str:
    whens = " ".join(f"WHEN '{loc}' THEN '{cfg}'::regconfig" for loc, cfg in PG_CONFIGS.items())
    return f"(CASE locale {whens} ELSE 'simple'::regconfig END)"


def _pg_up() -> list[str]:
    cfg = _pg_config()
    return [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        "ALTER TABLE kb_passages ADD COLUMN kb_fts tsvector GENERATED ALWAYS AS ("
        f"setweight(to_tsvector({cfg}, title), 'A') || "
        f"setweight(to_tsvector({cfg}, coalesce(heading, '')), 'B') || "
        f"setweight(to_tsvector({cfg}, text), 'D')) STORED",
        "CREATE INDEX ix_kb_fts_passages ON kb_passages USING gin (kb_fts) WHERE published",
        "CREATE TABLE kb_fts_terms (term text PRIMARY KEY, docs integer NOT NULL)",
        "CREATE INDEX ix_kb_fts_terms_trgm ON kb_fts_terms USING gin (term gin_trgm_ops)",
        "CREATE TABLE kb_fts_stats (name VARCHAR(32) PRIMARY KEY, value INTEGER NOT NULL)",
    ]


PG_DOWN = [
    "DROP TABLE IF EXISTS kb_fts_stats",
    "DROP TABLE IF EXISTS kb_fts_terms",
    "DROP INDEX IF EXISTS ix_kb_fts_passages",
]


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("locale", sa.String(length=16), nullable=True))

    op.create_table(
        "kb_articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_key", sa.String(length=1100), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("source_updated_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("source IN ('markdown', 'html', 'zendesk', 'ticket')", name=op.f("ck_kb_articles_source")),
        sa.CheckConstraint("status IN ('published', 'draft')", name=op.f("ck_kb_articles_status")),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], name=op.f("fk_kb_articles_ticket_id_tickets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_articles")),
        sa.UniqueConstraint("source_key", name=op.f("uq_kb_articles_source_key")),
        sa.UniqueConstraint("ticket_id", name=op.f("uq_kb_articles_ticket_id")),
    )
    op.create_table(
        "kb_passages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("heading", sa.String(length=300), nullable=True),
        sa.Column("url", sa.String(length=1100), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("fts_head", sa.Text(), nullable=True),
        sa.Column("fts_body", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["article_id"], ["kb_articles.id"], name=op.f("fk_kb_passages_article_id_kb_articles"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kb_passages")),
        sa.UniqueConstraint("article_id", "position", name="uq_kb_passages_article_position"),
    )
    with op.batch_alter_table("kb_passages", schema=None) as batch_op:
        batch_op.create_index("ix_kb_passages_locale_published", ["locale", "published"], unique=False)

    op.create_table(
        "help_answers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("answered", sa.Boolean(), nullable=False),
        sa.Column("article_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("escalated_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"], ["sessions.id"], name=op.f("fk_help_answers_session_id_sessions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_help_answers")),
    )
    with op.batch_alter_table("help_answers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_help_answers_session_id"), ["session_id"], unique=False)

    for statement in SQLITE_UP if op.get_bind().dialect.name == "sqlite" else _pg_up():
        op.execute(statement)


def downgrade() -> None:
    for statement in SQLITE_DOWN if op.get_bind().dialect.name == "sqlite" else PG_DOWN:
        op.execute(statement)
    with op.batch_alter_table("help_answers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_help_answers_session_id"))
    op.drop_table("help_answers")
    with op.batch_alter_table("kb_passages", schema=None) as batch_op:
        batch_op.drop_index("ix_kb_passages_locale_published")
    op.drop_table("kb_passages")
    op.drop_table("kb_articles")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("locale")
