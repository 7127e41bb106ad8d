"""preflight's history look-up by customer and target page, whatever the history's length

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 13:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Replaces (customer_id, created_at): preflight asks for one customer's orders of a
    # few target pages, and a customer with 100,000 recent orders made that a long scan.
    op.create_index(
        "ix_items_customer_target",
        "items",
        ["customer_id", sa.text("(document ->> 'target_url')"), "created_at"],
    )
    op.drop_index("ix_items_customer_created", table_name="items")


def downgrade() -> None:
    op.create_index("ix_items_customer_created", "items", ["customer_id", "created_at"])
    op.drop_index("ix_items_customer_target", table_name="items")
