"""QC's near-duplicate look-up reads compact signatures, not whole QC reports

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 20:45:00

QC compares each article with its publisher's 200 newest approved articles. Their
MinHash signatures lived only inside the QC report (``output->'signature'``), so the
look-up detoasted and decoded 200 whole reports per publisher and chunk: the part of
a QC chunk that grows with the ledger's history (bench/NOTES.md, "D's slowdown").

``stage_outputs.signature`` holds the same signature packed as big-endian 4-byte
integers (64 values: 256 bytes). It is a stored generated column, so every writer of
an approved QC report (the record statement, tests, benchmarks) fills it in the same
INSERT, and adding it backfills every existing row. The new partial index carries
the signature (``INCLUDE``), so the look-up reads the index, not the wide rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# IMMUTABLE (a generated column requires it): the bytes depend on the array alone.
_PACK_FUNCTION = """
CREATE OR REPLACE FUNCTION qc_signature_bytes(signature jsonb) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT string_agg(int4send(CAST(value AS int4)), ''::bytea ORDER BY position)
    FROM jsonb_array_elements_text(signature) WITH ORDINALITY AS v(value, position)
$$
"""
SIGNATURE_EXPRESSION = (
    "CASE WHEN stage = 'qc' AND ok AND jsonb_typeof(output -> 'signature') = 'array'"
    " THEN qc_signature_bytes(output -> 'signature') END"
)


def upgrade() -> None:
    op.execute(_PACK_FUNCTION)
    # Adding a stored generated column rewrites the table: that is the backfill.
    op.add_column(
        "stage_outputs",
        sa.Column("signature", sa.LargeBinary(), sa.Computed(SIGNATURE_EXPRESSION, persisted=True)),
    )
    op.create_index(
        "ix_stage_outputs_article_signatures",
        "stage_outputs",
        ["publisher_domain", sa.text("id DESC")],
        postgresql_include=["item_id", "signature"],
        postgresql_where=sa.text("signature IS NOT NULL"),
    )
    op.drop_index("ix_stage_outputs_signatures", table_name="stage_outputs")


def downgrade() -> None:
    op.create_index(
        "ix_stage_outputs_signatures",
        "stage_outputs",
        ["publisher_domain", sa.text("id DESC")],
        postgresql_where=sa.text("stage = 'qc' AND ok AND output ? 'signature'"),
    )
    op.drop_index("ix_stage_outputs_article_signatures", table_name="stage_outputs")
    op.drop_column("stage_outputs", "signature")
    op.execute("DROP FUNCTION qc_signature_bytes(jsonb)")
