"""Radiologist feedback on drafted reports: one row per version, never overwriting the draft.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_feedback",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("report_id", sa.String(64), nullable=False, index=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), nullable=False, index=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("final_text", sa.Text()),
        sa.Column("reason", sa.Text()),
        sa.Column("corrections", sa.JSON(), nullable=False),
        sa.Column("edit_distance", sa.Integer()),
        sa.Column("draft_chars", sa.Integer(), nullable=False),
        sa.Column("reviewer_type", sa.String(16), nullable=False),
        sa.Column("reviewer_id", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.UniqueConstraint("report_id", "version", name="uq_report_feedback_version"),
    )


def downgrade() -> None:
    op.drop_table("report_feedback")
