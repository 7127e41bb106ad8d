"""recovery lineage (batch origin/root/round, item origin/recovers) and the on_complete outbox

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

ON_COMPLETE_PENDING = (
    "finalized_at IS NOT NULL AND on_complete_sent_at IS NULL AND options ? 'on_complete'"
)


def upgrade() -> None:
    # A recovery batch names the batch it recovers, the lineage's root batch (whose
    # id, with the order id, is the delivery idempotency key) and its round, so
    # recovery batch ids are deterministic and a round exists once per lineage.
    op.add_column("batches", sa.Column("origin_batch_id", sa.String(128), nullable=True))
    op.add_column("batches", sa.Column("root_batch_id", sa.String(128), nullable=True))
    op.add_column("batches", sa.Column("recovery_round", sa.Integer(), nullable=True))
    op.add_column(
        "batches", sa.Column("on_complete_sent_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_foreign_key(
        "fk_batches_origin_batch_id_batches", "batches", "batches", ["origin_batch_id"], ["id"]
    )
    op.create_foreign_key(
        "fk_batches_root_batch_id_batches", "batches", "batches", ["root_batch_id"], ["id"]
    )
    op.create_index("ix_batches_origin_batch_id", "batches", ["origin_batch_id"])
    op.create_unique_constraint(
        "uq_batches_root_round", "batches", ["root_batch_id", "recovery_round"]
    )
    # The outbox of on_complete callbacks: finalized, asked for, not yet sent.
    op.create_index(
        "ix_batches_on_complete_pending",
        "batches",
        ["finalized_at"],
        postgresql_where=sa.text(ON_COMPLETE_PENDING),
    )
    # An item of a recovery batch names its lineage's root item and the failed item
    # it recovers; the unique constraint makes "recover this failed item" happen once.
    op.add_column("items", sa.Column("origin_item_id", sa.BigInteger(), nullable=True))
    op.add_column("items", sa.Column("recovers_item_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        "fk_items_origin_item_id_items", "items", "items", ["origin_item_id"], ["id"]
    )
    op.create_foreign_key(
        "fk_items_recovers_item_id_items", "items", "items", ["recovers_item_id"], ["id"]
    )
    op.create_unique_constraint("uq_items_recovers_item_id", "items", ["recovers_item_id"])
    op.create_index(
        "ix_items_origin_item_id",
        "items",
        ["origin_item_id"],
        postgresql_where=sa.text("origin_item_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_items_origin_item_id", table_name="items")
    op.drop_constraint("uq_items_recovers_item_id", "items", type_="unique")
    op.drop_constraint("fk_items_recovers_item_id_items", "items", type_="foreignkey")
    op.drop_constraint("fk_items_origin_item_id_items", "items", type_="foreignkey")
    op.drop_column("items", "recovers_item_id")
    op.drop_column("items", "origin_item_id")
    op.drop_index("ix_batches_on_complete_pending", table_name="batches")
    op.drop_constraint("uq_batches_root_round", "batches", type_="unique")
    op.drop_index("ix_batches_origin_batch_id", table_name="batches")
    op.drop_constraint("fk_batches_root_batch_id_batches", "batches", type_="foreignkey")
    op.drop_constraint("fk_batches_origin_batch_id_batches", "batches", type_="foreignkey")
    for column in ("on_complete_sent_at", "recovery_round", "root_batch_id", "origin_batch_id"):
        op.drop_column("batches", column)
