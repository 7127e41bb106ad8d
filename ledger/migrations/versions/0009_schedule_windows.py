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


def downgrade() -> None:
    op.drop_index("ix_schedule_windows_closes_at", table_name="schedule_windows")
    op.drop_table("schedule_windows")
