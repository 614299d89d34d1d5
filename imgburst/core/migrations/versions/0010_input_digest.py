"""A streamed image's content digest is XXH3-128 (`core/content_digest.py`), kept in a
column of its own. `input_sha256` stays, read for the rows recorded before: during a
rolling upgrade the older pods still write it and read every column they know, so a
rename would break them until they are replaced.

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
        batch.add_column(sa.Column("input_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("input_digest")
