"""the feeder's pool index per batch: a feed reads the best pooled items of each running batch

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 20:35:00

``ix_items_pool`` was ``(lane, score DESC, fair_rank, id)`` over the pooled items.
Its ordered scan cannot tell a running batch's items from a paused one's, so the
planner mostly chose ``ix_items_open`` instead: every open item of every running
batch, filtered and sorted on each feed, a cost that grew with the batch (about
130 ms a feed with 100,000 orders open). ``ix_items_pool_batch`` puts the batch
first: the feed takes each running batch's best ``limit`` pooled items with one
ordered index walk that stops there, and merges them. ``ix_batches_running`` finds
the running batches without reading the finished ones, however many there are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

#: ``pipeline.states.pooled_sql()`` when this migration was written.
POOL_WHERE = (
    "queued_at IS NULL AND lease_owner IS NULL"
    " AND state IN ('PENDING', 'PREFLIGHT', 'WRITING', 'QC', 'APPROVED')"
)


def upgrade() -> None:
    op.create_index(
        "ix_items_pool_batch",
        "items",
        ["batch_id", "lane", sa.text("score DESC"), "fair_rank", "id"],
        postgresql_where=sa.text(POOL_WHERE),
    )
    op.drop_index("ix_items_pool", table_name="items")
    op.create_index(
        "ix_batches_running", "batches", ["id"], postgresql_where=sa.text("status = 'RUNNING'")
    )


def downgrade() -> None:
    op.drop_index("ix_batches_running", table_name="batches")
    op.create_index(
        "ix_items_pool",
        "items",
        ["lane", sa.text("score DESC"), "fair_rank", "id"],
        postgresql_where=sa.text(POOL_WHERE),
    )
    op.drop_index("ix_items_pool_batch", table_name="items")
