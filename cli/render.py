"""Rich tables for the CLI's human-readable output."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from pipeline.stages_catalog import STAGES


def status_table(status: dict[str, Any]) -> Table:
    """One batch's status as a two-column table."""
    table = Table(title=f"batch {status['batch_id']}", show_header=False)
    for name in ("status", "priority", "total", "completed", "failed", "progress_percentage",
                 "success_rate", "estimated_time_remaining", "created_at", "finalized_at"):
        table.add_row(name, str(status.get(name)))
    for stage in STAGES:
        counts = status["stages"][stage]
        table.add_row(f"{stage}", f"{counts['done']} done, {counts['failed']} failed")
    return table


def summary_table(summary: dict[str, Any]) -> Table:
    """The demo's per-batch, per-stage summary."""
    table = Table(title=f"{summary['orders']} orders: {summary['delivered']} delivered, "
                  f"{summary['failed']} failed")
    for column in ("batch", "priority", "status", "orders", *STAGES, "delivered", "seconds"):
        table.add_column(column, justify="right" if column not in ("batch", "status") else "left")
    for row in summary["batches"]:
        stages = [f"{row['stages'][s]['done']}/{row['stages'][s]['failed']}" for s in STAGES]
        table.add_row(row["batch_id"], row["priority"], row["status"], str(row["orders"]),
                      *stages, str(row["completed"]), str(row["wall_seconds"]))
    table.caption = "stage columns: done/failed"
    return table
