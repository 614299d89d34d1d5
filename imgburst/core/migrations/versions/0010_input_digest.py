"""A streamed image's content digest is XXH3-128 (`core/content_digest.py`): the column
that held its SHA-256 is named for what it holds now. Digests already recorded stay (bare
SHA-256 hex, still compared as such).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("input_sha256", new_column_name="input_digest",
                           existing_type=sa.String(64), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("input_digest", new_column_name="input_sha256",
                           existing_type=sa.String(64), existing_nullable=True)
