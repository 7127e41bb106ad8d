"""a partial index on the writing and delivery work queued for the slots

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 18:00:00

The feeder counts the items whose message is out for writing or delivery (queued,
not yet claimed) against the free concurrency slots, so that a feed does not send
work again for slots that queued work will ask for, and the surplus stays the share
``BATCH_FEED_SURPLUS`` says.
``ix_items_queued`` holds every queued item, with the CPU stages' chunks of 500
among them; this one holds only those few rows, by lane.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

#: ``pipeline.stage_registry.queued_io_sql()`` when this migration was written
#: (a migration never imports app code).
QUEUED_IO = "queued_at IS NOT NULL AND state IN ('WRITING', 'APPROVED')"


def upgrade() -> None:
    op.create_index(
        "ix_items_queued_io", "items", ["lane", "queued_at"], postgresql_where=sa.text(QUEUED_IO)
    )


def downgrade() -> None:
    op.drop_index("ix_items_queued_io", table_name="items")
