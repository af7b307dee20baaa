"""Store-back of finished reports to the PACS: its state and per-server outcome on the job.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        # null: no PACS takes results; pending → stored | partial | failed (libs/dicomweb/results.py)
        batch.add_column(sa.Column("results_state", sa.String(16)))
        batch.add_column(sa.Column("results", sa.JSON()))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("results")
        batch.drop_column("results_state")
