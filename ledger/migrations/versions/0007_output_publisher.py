"""QC's near-duplicate look-up by publisher: outputs carry their publisher domain

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

SIGNATURES_WHERE = "stage = 'qc' AND ok AND output ? 'signature'"


def upgrade() -> None:
    op.add_column("stage_outputs", sa.Column("publisher_domain", sa.String(253), nullable=True))
    op.execute(
        "UPDATE stage_outputs o SET publisher_domain = i.publisher_domain"
        f" FROM items i WHERE i.id = o.item_id AND o.{SIGNATURES_WHERE.replace(' AND ', ' AND o.')}"
    )
    # QC compares each article with its publisher's newest approved ones: an index
    # walk of at most a few hundred entries, however long the history.
    op.create_index(
        "ix_stage_outputs_signatures",
        "stage_outputs",
        ["publisher_domain", sa.text("id DESC")],
        postgresql_where=sa.text(SIGNATURES_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_stage_outputs_signatures", table_name="stage_outputs")
    op.drop_column("stage_outputs", "publisher_domain")
