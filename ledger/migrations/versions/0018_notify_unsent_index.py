"""a partial index on the notifications not yet sent

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 16:40:00

The sweeper looks for unsent notifications on every sweep and the exporter counts
them on every scrape; ``idempotency_keys`` also holds every delivery's and
submission's key, so both read the whole table. The index holds only the rows
that wait (``scope = 'notify'`` and no ``sent_at``), ordered by age as the sweeper
takes them: a handful of entries however large the table grows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

UNSENT = "scope = 'notify' AND (result ->> 'sent_at') IS NULL"


def upgrade() -> None:
    op.create_index(
        "ix_idempotency_keys_notify_unsent",
        "idempotency_keys",
        ["created_at"],
        postgresql_where=sa.text(UNSENT),
    )


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_notify_unsent", table_name="idempotency_keys")
