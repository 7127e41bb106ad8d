"""``batchline monitor``'s screen, drawn from one snapshot (``cli.monitor_snapshot``). Pure.

Nothing here reads a server: the same dict that ``--json`` prints is what is
drawn, so a test can check the screen's figures against the JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.status_view import NOT_YET, halt_banner
from pipeline.status import human_duration


def monitor_frame(snapshot: dict[str, Any]) -> Group:
    """The whole screen: header, lanes, batches, slots, rate limits, errors."""
    return Group(*_parts(snapshot))


def _parts(snapshot: dict[str, Any]) -> Iterator[RenderableType]:
    yield _header(snapshot)
    yield lanes_table(snapshot)
    yield batches_table(snapshot)
    yield slots_table(snapshot["slots"])
    if snapshot["rate_limits"]:
        yield rates_table(snapshot["rate_limits"])
    yield errors_table(snapshot)


def _header(snapshot: dict[str, Any]) -> Text:
    if snapshot["halted"]:
        return halt_banner(snapshot["halt"]["reason"])
    counts = ", ".join(f"{n} {status}" for status, n in snapshot["batch_counts"].items())
    return Text(f"batchline at {snapshot['at'][:19]}Z: not halted; batches: {counts or 'none'}")


def lanes_table(snapshot: dict[str, Any]) -> Table:
    """Per lane: messages in Redis, orders waiting in the pool, the oldest wait."""
    table = Table(title="lanes")
    for column in ("lane", "messages", "pooled", "oldest wait"):
        table.add_column(column, justify="left" if column == "lane" else "right")
    for lane, row in snapshot["lanes"].items():
        wait = row["oldest_wait_seconds"]
        table.add_row(
            lane,
            str(row["messages"]),
            str(row["pooled"]),
            human_duration(wait) if row["pooled"] else NOT_YET,
        )
    for queue, messages in snapshot["queues"].items():
        table.add_row(queue, str(messages), NOT_YET, NOT_YET)
    return table


def batches_table(snapshot: dict[str, Any]) -> Table:
    """One page of open batches, high priority first: progress bar, velocity, ETA, failures."""
    title = (
        f"open batches: {snapshot['open_batches']}"
        f" (page {snapshot['page']} of {snapshot['pages']}, high priority first)"
    )
    table = Table(title=title)
    table.add_column("batch", overflow="fold")
    for column in ("priority", "status", "progress", "done", "velocity", "ETA", "failed"):
        table.add_column(column, justify="left" if column == "progress" else "right")
    for batch in snapshot["batches"]:
        ended = batch["completed"] + batch["failed"] + batch["cancelled"]
        table.add_row(
            escape(batch["batch_id"]),
            batch["priority"],
            batch["status"],
            progress_bar(ended, batch["total"]),
            f"{ended}/{batch['total']} ({batch['progress_percentage']:g} %)",
            f"{batch['velocity']:g}/s",
            batch["eta_human"],
            str(batch["failed"]),
        )
    if not snapshot["batches"]:
        table.add_row("(none open)", "", "", "", "", "", "", "")
    return table


def progress_bar(done: int, total: int, width: int = 12) -> str:
    """``done`` of ``total`` as a bar of block characters: legible in a log or a copy too."""
    filled = round(width * done / total) if total else width
    return "█" * filled + "░" * (width - filled)


def slots_table(slots: dict[str, Any]) -> Table:
    """Concurrency slots in use against their caps (a cap of 0 means none)."""
    table = Table(title="concurrency slots")
    for column in ("scope", "in use", "cap"):
        table.add_column(column, justify="left" if column == "scope" else "right")
    table.add_row("global", str(slots["global"]["in_use"]), _cap(slots["global"]["limit"]))
    for busy in slots["busiest"]:
        table.add_row(
            f"{busy['scope']} {escape(busy['name'])}", str(busy["in_use"]), _cap(busy["limit"])
        )
    return table


def _cap(limit: int) -> str:
    return str(limit) if limit > 0 else "none"


def rates_table(rates: dict[str, dict[str, Any]]) -> Table:
    """Tokens left in each service's bucket, and calls in flight against ``conc=N``."""
    table = Table(title="rate limits")
    for column in ("service", "tokens", "rate", "calls in flight"):
        table.add_column(column, justify="left" if column == "service" else "right")
    for service, row in rates.items():
        tokens = "per key" if row["tokens"] is None else f"{row['tokens']:g}/{row['burst']}"
        calls = NOT_YET if row["calls_in_flight"] is None else str(row["calls_in_flight"])
        if row["concurrency"]:
            calls += f"/{row['concurrency']}"
        table.add_row(service, tokens, f"{row['per_minute']:g}/min", calls)
    return table


def errors_table(snapshot: dict[str, Any]) -> Table:
    """Failures by error class over the last hours, then the latest failed orders."""
    errors = snapshot["errors"]
    table = Table(title=f"errors (last {errors['hours']} h; this hour: {errors['this_hour']})")
    table.add_column("error class / latest failed order")
    table.add_column("count / reason")
    for error_class, count in errors["by_class"].items():
        table.add_row(error_class, str(count))
    for failure in snapshot["recent_failures"]:
        table.add_row(
            escape(f"{failure['batch_id']}/{failure['order_id']} ({failure['error_class']})"),
            escape(failure["reason"][:70]),
        )
    if not errors["by_class"] and not snapshot["recent_failures"]:
        table.add_row("(none)", "")
    return table
