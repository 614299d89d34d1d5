"""Batches may carry a name a person gave them (`holiday`), shown beside the id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("batches", sa.Column("name", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("batches", "name")
