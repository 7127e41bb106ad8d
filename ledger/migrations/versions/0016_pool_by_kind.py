"""the feeder's pool index per kind: a feed reads only what each of a lane's queues can take

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 09:00:00

A lane has two queues, one for the I/O-bound stages (writing, delivery) and one for
the others, and a feed asks for the best pooled items of each kind up to that
queue's room. ``ix_items_pool_batch`` mixed both kinds in one order, so a batch with
a deep backlog of one kind (100,000 orders waiting for preflight) made every feed
walk through that backlog up to the whole limit (about 6,000 rows) to find the few
rows of the other kind, and keep about 500 (bench/NOTES.md, session 8 and 9). One
partial index per kind, same columns, lets each walk stop at its own queue's room.
Every pooled row is in exactly one of them, so updates write no more index entries
than before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

_POOLED = "queued_at IS NULL AND lease_owner IS NULL AND state IN "
#: ``pipeline.stage_registry.pooled_kind_sql()`` when this migration was written
#: (a migration never imports app code).
POOL_KINDS = {
    "ix_items_pool_io": _POOLED + "('WRITING', 'APPROVED')",
    "ix_items_pool_cpu": _POOLED + "('PENDING', 'PREFLIGHT', 'QC')",
}
#: ``pipeline.states.pooled_sql()``: the index this migration replaces (0014).
POOL_WHERE = _POOLED + "('PENDING', 'PREFLIGHT', 'WRITING', 'QC', 'APPROVED')"
_COLUMNS: list[str | sa.TextClause] = ["batch_id", "lane", sa.text("score DESC"), "fair_rank", "id"]


def upgrade() -> None:
    for name, where in POOL_KINDS.items():
        op.create_index(name, "items", _COLUMNS, postgresql_where=sa.text(where))
    op.drop_index("ix_items_pool_batch", table_name="items")


def downgrade() -> None:
    op.create_index("ix_items_pool_batch", "items", _COLUMNS, postgresql_where=sa.text(POOL_WHERE))
    for name in POOL_KINDS:
        op.drop_index(name, table_name="items")
