"""Rich tables for the CLI's human-readable output."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from pipeline.retention import describe as describe_pruned
from pipeline.retention import is_pruned
from pipeline.stage_registry import STAGE_NAMES


def summary_table(summary: dict[str, Any]) -> Table:
    """The demo's per-batch summary: stage counts (done/failed), delivered, seconds."""
    title = (
        f"{summary['orders']} orders: {summary['delivered']} delivered, {summary['failed']} failed"
        f" in {summary['elapsed_seconds']} s ({summary['orders_per_second']} orders/s)"
    )
    table = Table(title=title, caption="stage columns: done/failed")
    table.add_column("priority")
    table.add_column("status")
    for column in ("orders", *STAGE_NAMES, "delivered", "seconds"):
        table.add_column(column, justify="right")
    for row in summary["batches"]:
        stages = [f"{row['stages'][s]['done']}/{row['stages'][s]['failed']}" for s in STAGE_NAMES]
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
    for stage in STAGE_NAMES:
        if stage in timings:
            t = timings[stage]
            table.add_row(
                stage, str(t["runs"]), str(t["mean_ms"]), str(t["p95_ms"]), str(t["failures"])
            )
    return table


def _summary(ok: bool, output: dict[str, Any]) -> str:
    # Told apart by what the output holds, so a new stage needs no case here.
    if is_pruned(output):
        return describe_pruned(output)
    if output.get("rewrite"):
        return "sent back for a rewrite: " + "; ".join(output.get("feedback", []))
    if not ok:
        return f"{output.get('category', '')}: {output.get('error', '')}"
    if "prompt" in output:  # preflight
        words = output.get("prompt", {}).get("target_words")
        return f"anchor {output.get('anchor_class')}, prompt for {words} words"
    if "checks" in output:  # QC
        checks = output.get("checks", {})
        return f"{sum(c['passed'] for c in checks.values())}/{len(checks)} checks passed"
    if "html" in output:  # writing
        title, words = output.get("title", ""), output.get("word_count")
        return f"{title!r}, {words} words ({output.get('writer')})"
    return str(output.get("published_url", ""))


def journey_table(journey: dict[str, Any]) -> Table:
    """One order's path through the stages, one row per stored output."""
    title = f"order {journey['order_id']} in batch {journey['batch_id']}: {journey['state']}"
    if journey["error_class"]:
        title += f" ({journey['error_class']}: {journey['error_message']})"
    table = Table(title=title)
    for column in ("stage", "attempt", "ok", "ms", "at", "result"):
        table.add_column(column)
    for step in journey["stages"]:
        table.add_row(
            step["stage"],
            str(step["attempt"]),
            "yes" if step["ok"] else "no",
            f"{step['duration_ms']:.1f}",
            step["at"][11:23],
            _summary(step["ok"], step["output"]),
        )
    return table


def failures_table(failures: list[dict[str, str]]) -> Table:
    """Failed orders with their error class and reason."""
    table = Table(title="failed orders")
    for column in ("order", "error class", "reason"):
        table.add_column(column)
    for failure in failures:
        table.add_row(failure["order_id"], failure["error_class"], failure["reason"][:90])
    return table
