"""Streamed batches: a batch may be open (`receiving`) while its images arrive one request
each; each job keeps its image's upload name and content digest, so a resend is known.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("closed_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("closed_by", sa.String(16), nullable=True))
        batch.add_column(sa.Column("resume_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("received_at", TIMESTAMP, nullable=True))
    op.execute("UPDATE batches SET closed_at = created_at, closed_by = 'client'")  # whole
    op.create_index("ix_batches_owner_resume", "batches", ["owner", "resume_key"])
    op.create_index("ix_batches_open", "batches", ["closed_at", "received_at"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("upload_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("input_sha256", sa.String(64), nullable=True))
    op.create_index("uq_jobs_batch_upload", "jobs", ["batch_id", "upload_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_jobs_batch_upload", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("input_sha256")
        batch.drop_column("upload_key")
    op.drop_index("ix_batches_open", "batches")
    op.drop_index("ix_batches_owner_resume", "batches")
    with op.batch_alter_table("batches") as batch:
        for column in ("received_at", "resume_key", "closed_by", "closed_at"):
            batch.drop_column(column)
