"""segments.tail_kept: whether a segment holds the words after its chunk's trailing cut

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 20:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows from before are taken as final: their meetings completed (or will) as they were.
    op.add_column("segments", sa.Column("tail_kept", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("tail_kept")
