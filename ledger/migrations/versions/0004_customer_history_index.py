"""index for preflight's look-up of a customer's recent orders

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 11:55:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_items_customer_created", "items", ["customer_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_items_customer_created", table_name="items")
