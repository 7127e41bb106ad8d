"""the work pool (items: lane, score, fair rank, queued mark) and output run times

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 13:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

POOL_WHERE = (
    "queued_at IS NULL AND lease_owner IS NULL"
    " AND state IN ('PENDING', 'PREFLIGHT', 'WRITING', 'QC', 'APPROVED')"
)


def upgrade() -> None:
    op.add_column("items", sa.Column("lane", sa.String(8), nullable=False, server_default="normal"))
    op.add_column("items", sa.Column("score", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("items", sa.Column("fair_rank", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("items", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    # When the chunk that produced an output held its item (slots taken, outcome
    # not yet committed), by the worker's clock: caps are audited from these.
    op.add_column(
        "stage_outputs", sa.Column("started_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "stage_outputs", sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE items SET lane = b.priority FROM batches b WHERE b.id = items.batch_id")
    op.create_index(
        "ix_items_pool",
        "items",
        ["lane", sa.text("score DESC"), "fair_rank", "id"],
        postgresql_where=sa.text(POOL_WHERE),
    )
    op.create_index(
        "ix_items_queued",
        "items",
        ["queued_at"],
        postgresql_where=sa.text("queued_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_items_queued", table_name="items")
    op.drop_index("ix_items_pool", table_name="items")
    op.drop_column("stage_outputs", "finished_at")
    op.drop_column("stage_outputs", "started_at")
    for column in ("queued_at", "fair_rank", "score", "lane"):
        op.drop_column("items", column)
