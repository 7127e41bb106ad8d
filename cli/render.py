"""Rich tables for the CLI's human-readable output."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from pipeline.stages_catalog import STAGES


def status_table(status: dict[str, Any]) -> Table:
    """One batch's status as a two-column table."""
    table = Table(title=f"batch {status['batch_id']}", show_header=False)
    for name in (
        "status",
        "priority",
        "total",
        "completed",
        "failed",
        "progress_percentage",
        "success_rate",
        "estimated_time_remaining",
        "created_at",
        "finalized_at",
    ):
        table.add_row(name, str(status.get(name)))
    for stage in STAGES:
        counts = status["stages"][stage]
        table.add_row(f"{stage}", f"{counts['done']} done, {counts['failed']} failed")
    return table


def summary_table(summary: dict[str, Any]) -> Table:
    """The demo's per-batch summary: stage counts (done/failed), delivered, seconds."""
    title = (
        f"{summary['orders']} orders: {summary['delivered']} delivered, {summary['failed']} failed"
        f" in {summary['elapsed_seconds']} s ({summary['orders_per_second']} orders/s)"
    )
    table = Table(title=title, caption="stage columns: done/failed")
    table.add_column("priority")
    table.add_column("status")
    for column in ("orders", *STAGES, "delivered", "seconds"):
        table.add_column(column, justify="right")
    for row in summary["batches"]:
        stages = [f"{row['stages'][s]['done']}/{row['stages'][s]['failed']}" for s in STAGES]
        table.add_row(
            row["priority"],
            row["status"],
            str(row["orders"]),
            *stages,
            str(row["completed"]),
            str(row["wall_seconds"]),
        )
    return table


def timings_table(timings: dict[str, dict[str, Any]]) -> Table:
    """Handler time per stage, from the ledger's stage outputs."""
    table = Table(title="time per item and stage (handler only)")
    for column in ("stage", "runs", "mean ms", "p95 ms", "failures"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in STAGES:
        if stage in timings:
            t = timings[stage]
            table.add_row(
                stage, str(t["runs"]), str(t["mean_ms"]), str(t["p95_ms"]), str(t["failures"])
            )
    return table
