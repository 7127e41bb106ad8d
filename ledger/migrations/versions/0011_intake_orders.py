"""intake_orders: single orders accepted durably, grouped into batches by a flush

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "intake_orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("project_uuid", sa.String(128), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("order_id", sa.String(128), nullable=False),
        sa.Column("document", JSONB(), nullable=False),
        sa.Column(
            "accepted_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("batch_id", sa.String(128), nullable=True),
        sa.Column("flushed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_intake_orders"),
        sa.UniqueConstraint("project_uuid", "order_id", name="uq_intake_orders_project_order"),
    )
    op.create_index(
        "ix_intake_orders_pending",
        "intake_orders",
        ["project_uuid", "priority", "id"],
        postgresql_where=sa.text("batch_id IS NULL"),
    )
    op.create_index(
        "ix_intake_orders_unflushed",
        "intake_orders",
        ["batch_id"],
        postgresql_where=sa.text("batch_id IS NOT NULL AND flushed_at IS NULL"),
    )
    op.create_index("ix_intake_orders_order_id", "intake_orders", ["order_id"])


def downgrade() -> None:
    op.drop_table("intake_orders")
