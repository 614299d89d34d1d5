"""Batches say when all their jobs were sent to the broker: one with none, recorded a while
ago, was cut short (the API died mid-submission) and the reconciler sends the rest.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("queued_at", sa.DateTime().with_variant(
        mysql.DATETIME(fsp=6), "mysql"), nullable=True))
    op.execute("UPDATE batches SET queued_at = created_at")  # batches from before: all sent
    op.create_index("ix_batches_queued_at", "batches", ["queued_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_queued_at", "batches")
    op.drop_column("batches", "queued_at")
