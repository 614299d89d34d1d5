"""Cover the recent-timings read: (finished_at, wait_ms, run_ms) instead of finished_at
alone, so the stats' latency percentiles come from the index without row lookups.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_finished_timings", "jobs", ["finished_at", "wait_ms", "run_ms"])
    op.drop_index("ix_jobs_finished_at", table_name="jobs")


def downgrade() -> None:
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
    op.drop_index("ix_jobs_finished_timings", table_name="jobs")
