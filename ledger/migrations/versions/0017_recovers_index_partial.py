"""the unique index on items.recovers_item_id holds recovery items only

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 09:00:00

``uq_items_recovers_item_id`` (0008) was a unique constraint, so its index took an
entry for every row version of every item, NULLs included, though only recovery
items have a value. No update of ``items`` is HOT (each changes an indexed column
or a partial index's predicate), so each of an order's nine updates wrote into it:
a 100,000-order run added about 900,000 NULL entries (bench/NOTES.md, session 9).
A partial unique index keeps the guarantee (an item is recovered once; NULLs never
conflicted) and the ``ON CONFLICT`` target (``ledger/lineage.py`` names its predicate),
and serves the foreign key's look-ups (``recovers_item_id = :id``) as before.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("uq_items_recovers_item_id", "items", type_="unique")
    op.create_index(
        "uq_items_recovers_item_id",
        "items",
        ["recovers_item_id"],
        unique=True,
        postgresql_where=sa.text("recovers_item_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_items_recovers_item_id", table_name="items")
    op.create_unique_constraint("uq_items_recovers_item_id", "items", ["recovers_item_id"])
