"""the pool by lane and state, with each item's wait: metrics count it from the index

Revision ID: 0011
Revises: 0008
Create Date: 2026-11-30 14:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0008"
branch_labels = None
depends_on = None

POOL_WHERE = (
    "queued_at IS NULL AND lease_owner IS NULL"
    " AND state IN ('PENDING', 'PREFLIGHT', 'WRITING', 'QC', 'APPROVED')"
)


def upgrade() -> None:
    # The exporter's scrape counts the pool by lane and state and finds each lane's
    # longest wait (updated_at) from this index alone (an index-only scan), instead
    # of reading every open item's row: docs/BENCHMARKS.md has the figure.
    op.create_index(
        "ix_items_pool_state",
        "items",
        ["lane", "state", "updated_at"],
        postgresql_where=sa.text(POOL_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_items_pool_state", table_name="items")
