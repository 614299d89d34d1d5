"""Batches belong to the API key's owner that created them (NULL when auth is off).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("owner", sa.String(64), nullable=True))
    op.create_index("ix_batches_owner_created", "batches", ["owner", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_batches_owner_created", table_name="batches")
    op.drop_column("batches", "owner")
