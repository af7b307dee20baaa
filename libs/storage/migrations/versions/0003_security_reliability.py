"""Security and reliability: API keys, the audit trail (append-only, hash-chained), reconciler fields.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS = "0" * 64

# The trail is append-only in the database itself, not only in our code: UPDATE and DELETE fail.
_PG_GUARD = """
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
"""
_SQLITE_GUARDS = [
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
]


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("agent_type", sa.String(16), nullable=False),
        sa.Column("agent_id", sa.String(200), nullable=False, index=True),
        sa.Column("action", sa.String(1), nullable=False),
        sa.Column("outcome", sa.String(2), nullable=False),
        sa.Column("entity_type", sa.String(64), nullable=False, index=True),
        sa.Column("entity_id", sa.String(200), index=True),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("source_address", sa.String(64)),
        sa.Column("http_status", sa.Integer()),
        sa.Column("detail", sa.Text()),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS}])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(_PG_GUARD)
    elif bind.dialect.name == "sqlite":
        for statement in _SQLITE_GUARDS:
            op.execute(statement)
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("requeued_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("requeue_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("failure_kind", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("failure_kind")
        batch.drop_column("requeue_count")
        batch.drop_column("requeued_at")
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    op.drop_table("audit_head")
    op.drop_table("audit_events")
    op.drop_table("api_keys")
