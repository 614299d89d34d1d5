"""Job timings (queue wait, processing), an index on finished_at, and a covering index for
batch progress (counts and first start / last finish per batch read from the index only).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("wait_ms", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("run_ms", sa.Integer(), nullable=True))
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
    op.create_index("ix_jobs_batch_progress", "jobs",
                    ["batch_id", "status", "started_at", "finished_at"])
    op.drop_index("ix_jobs_batch_status", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_batch_status", "jobs", ["batch_id", "status"])
    op.drop_index("ix_jobs_batch_progress", table_name="jobs")
    op.drop_index("ix_jobs_finished_at", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("run_ms")
        batch.drop_column("wait_ms")
