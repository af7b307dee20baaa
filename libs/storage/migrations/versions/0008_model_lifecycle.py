"""Model lifecycle: the registry (model versions and their events), the other model's outputs on shadow
and canary studies, drift samples and checks, which model and arm drafted each job, and the optional 1-5
rating of a draft in the radiologist's feedback.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("report_feedback", sa.Column("rating", sa.Integer()))
    op.add_column("jobs", sa.Column("model_id", sa.String(200)))
    op.add_column("jobs", sa.Column("model_arm", sa.String(16)))
    op.create_index("ix_jobs_model_id", "jobs", ["model_id"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("manifest", sa.JSON(), nullable=False),
        sa.Column("validation", sa.JSON()),
        sa.Column("comparison", sa.JSON()),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_by", sa.String(200), nullable=False),
        sa.Column("state_since", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_model_versions_name", "model_versions", ["name"])
    op.create_index("ix_model_versions_state", "model_versions", ["state"])
    op.create_table(
        "model_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_id", sa.String(200), sa.ForeignKey("model_versions.id"), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16)),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
    )
    op.create_index("ix_model_events_at", "model_events", ["at"])
    op.create_index("ix_model_events_model_id", "model_events", ["model_id"])
    op.create_table(
        "model_outputs",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("model_id", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("report", sa.JSON()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_model_outputs_created_at", "model_outputs", ["created_at"])
    op.create_table(
        "drift_samples",
        sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("embedding", sa.JSON()),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
    )
    op.create_index("ix_drift_samples_model_id", "drift_samples", ["model_id"])
    op.create_index("ix_drift_samples_at", "drift_samples", ["at"])
    op.create_table(
        "drift_checks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_id", sa.String(200), nullable=False),
        sa.Column("signal", sa.String(64), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=False),
        sa.Column("p_value", sa.Float(), nullable=False),
        sa.Column("alarm", sa.Boolean(), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_drift_checks_at", "drift_checks", ["at"])


def downgrade() -> None:
    for table in ("drift_checks", "drift_samples", "model_outputs", "model_events", "model_versions"):
        op.drop_table(table)
    op.drop_index("ix_jobs_model_id", "jobs")
    op.drop_column("jobs", "model_arm")
    op.drop_column("jobs", "model_id")
    op.drop_column("report_feedback", "rating")
