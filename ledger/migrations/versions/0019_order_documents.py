"""orders' JSON out of items, into the insert-only order_documents

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02 03:00:00

No update of ``items`` is HOT (each changes an indexed column), so every one of an
order's nine state changes wrote a whole new row version, and about 425 of a
version's 600 bytes were the order's ``document``, which never changes while the
order moves. PostgreSQL only moves a value out of line (TOAST) from rows over about
2 kB, so no storage parameter helps (docs/BENCHMARKS.md). ``order_documents`` holds
each item's document once, written with the item; ``items`` keeps the one field its
own queries need, the deadline (the sweeper's score refresh).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_documents",
        sa.Column("item_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("item_id", name="pk_order_documents"),
    )
    op.execute("INSERT INTO order_documents (item_id, document) SELECT id, document FROM items")
    op.add_column("items", sa.Column("deadline", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE items SET deadline = (document ->> 'deadline')::timestamptz"
        " WHERE document ->> 'deadline' IS NOT NULL"
    )
    op.drop_column("items", "document")


def downgrade() -> None:
    op.add_column(
        "items",
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.execute(
        "UPDATE items SET document = d.document FROM order_documents d WHERE d.item_id = items.id"
    )
    # An item with no stored document (impossible through the ledger's own paths)
    # would stop the NOT NULL below: it gets an empty one, which its next stage rejects.
    op.execute("UPDATE items SET document = '{}'::jsonb WHERE document IS NULL")
    op.alter_column("items", "document", nullable=False)
    op.drop_column("items", "deadline")
    op.drop_table("order_documents")
