"""Review workstation sign-in sessions (a hash of each cookie's secret, who, until when), and the
reviewer's display name on feedback (the signed report names who signed it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workstation_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("principal_kind", sa.String(16), nullable=False),
        sa.Column("principal_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_workstation_sessions_principal_id", "workstation_sessions", ["principal_id"])
    op.create_index("ix_workstation_sessions_expires_at", "workstation_sessions", ["expires_at"])
    op.add_column("report_feedback", sa.Column("reviewer_name", sa.String(200)))


def downgrade() -> None:
    op.drop_column("report_feedback", "reviewer_name")
    op.drop_table("workstation_sessions")
