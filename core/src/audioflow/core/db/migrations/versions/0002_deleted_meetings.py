"""deleted meetings (replays of a deleted meeting's uploads are refused) and pruning by age

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 15:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deleted_meetings",
        sa.Column("meeting_id", sa.String(length=128), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("meeting_id", name=op.f("pk_deleted_meetings")),
    )
    op.create_index(op.f("ix_deleted_meetings_deleted_at"), "deleted_meetings", ["deleted_at"])
    op.create_index(op.f("ix_webhook_deliveries_received_at"), "webhook_deliveries", ["received_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_deliveries_received_at"), table_name="webhook_deliveries")
    op.drop_index(op.f("ix_deleted_meetings_deleted_at"), table_name="deleted_meetings")
    op.drop_table("deleted_meetings")
