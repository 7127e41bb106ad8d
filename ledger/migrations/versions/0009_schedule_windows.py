"""schedule_windows: one row per opened run of a scheduled stage

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# pipeline.states.pooled_sql() as of this revision (a migration never imports app code).
POOL_WHERE = (
    "queued_at IS NULL AND lease_owner IS NULL"
    " AND state IN ('PENDING', 'PREFLIGHT', 'WRITING', 'QC', 'APPROVED')"
)


def upgrade() -> None:
    op.create_table(
        "schedule_windows",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("stage", sa.String(32), nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opens_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closes_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("opened_by", sa.String(200), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_windows"),
        # One row per run: opening it twice (two beats, a late message) inserts nothing.
        sa.UniqueConstraint("stage", "run_at", name="uq_schedule_windows_stage_run"),
    )
    op.create_index("ix_schedule_windows_closes_at", "schedule_windows", ["closes_at"])
    # The feeder's scan with a window shut: best first within each state, so a held
    # backlog is skipped, not walked (bench/schedule_hold.py).
    op.create_index(
        "ix_items_pool_state",
        "items",
        ["lane", "state", sa.text("score DESC"), "fair_rank", "id"],
        # The exporter counts the pool by lane and state and finds each lane's longest
        # wait from this index alone (an index-only scan): docs/BENCHMARKS.md.
        postgresql_include=["updated_at"],
        postgresql_where=sa.text(POOL_WHERE),
    )


def downgrade() -> None:
    op.drop_index("ix_items_pool_state", table_name="items")
    op.drop_index("ix_schedule_windows_closes_at", table_name="schedule_windows")
    op.drop_table("schedule_windows")
