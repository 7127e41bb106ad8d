"""preflight's history look-up from an insert-only table of order targets

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 17:20:00

0006 indexed ``items`` on ``(customer_id, document->>'target_url', created_at)``.
Its keys arrive in random order, and every new row version of an item (claims,
state changes: about a dozen per order) inserted another entry on a random page.
``order_targets`` holds those three values once per order, written with the item
and never updated; the look-up joins ``items`` by primary key for the rest.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_targets",
        sa.Column("item_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("customer_id", sa.String(length=128), nullable=False),
        sa.Column("target_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_order_targets"),
    )
    # Every stored order, failed ones too: the look-up filters on the item's state.
    op.execute(
        """
        INSERT INTO order_targets (item_id, customer_id, target_url, created_at)
        SELECT id, customer_id, document ->> 'target_url', created_at FROM items
        """
    )
    op.create_index(
        "ix_order_targets_lookup", "order_targets", ["customer_id", "target_url", "created_at"]
    )
    op.drop_index("ix_items_customer_target", table_name="items")


def downgrade() -> None:
    op.create_index(
        "ix_items_customer_target",
        "items",
        ["customer_id", sa.text("(document ->> 'target_url')"), "created_at"],
    )
    op.drop_index("ix_order_targets_lookup", table_name="order_targets")
    op.drop_table("order_targets")
