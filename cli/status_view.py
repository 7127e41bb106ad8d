"""``batchline status``'s table: every count the JSON has, with units, and the failed orders.

Pure rendering: the dict is ``batch_status``'s, the failed orders come from
``ledger.overview.failed_orders``. Nothing is printed as ``None``: a value not
known yet says so in words.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Final

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cli.schedule_cmd import window_rows
from pipeline.stage_registry import STAGE_NAMES

#: Shown in place of a value that does not exist (yet).
NOT_YET: Final = "-"


def halt_banner(reason: str | None) -> Text:
    """One red line that says all work is stopped, and why."""
    return Text(
        f"HALTED: no worker claims work until `batchline resume-all` ({reason})",
        style="bold red",
    )


def status_renderables(
    status: dict[str, Any], failures: Sequence[dict[str, str]] = ()
) -> Iterator[RenderableType]:
    """What ``batchline status ID`` prints: a halt banner, the status, stages, failures."""
    if status.get("halted"):
        yield halt_banner(status.get("halt_reason"))
    yield status_table(status)
    yield stages_table(status)
    if failures:
        yield failures_table(failures, status["failed"])


def status_table(status: dict[str, Any]) -> Table:
    """The batch's counts and timing, two columns, nothing left as ``None``."""
    table = Table(title=f"batch {status['batch_id']}", show_header=False)
    for name, value in _status_rows(status):
        table.add_row(name, value)
    return table


def _status_rows(status: dict[str, Any]) -> Iterator[tuple[str, str]]:
    total = status["total"]
    yield "status", status["status"] + (" (system halted)" if status.get("halted") else "")
    yield "priority", status["priority"]
    yield "orders", str(total)
    for name in ("completed", "failed", "cancelled", "remaining"):
        yield name, _count(status.get(name, 0), total)
    yield "progress", f"{status['progress_percentage']:g} %"
    rate = status.get("success_rate")
    yield "success rate", NOT_YET if rate is None else f"{rate:g} % of ended orders"
    yield "velocity", f"{status.get('velocity', 0.0):g} orders/s"
    yield "ETA", _eta(status)
    yield "created", status["created_at"]
    yield "finalized", status.get("finalized_at") or NOT_YET
    yield from _lineage_rows(status)
    deferred = status.get("deferred") or {}
    if deferred.get("orders"):
        yield (
            "deferred",
            (
                f"{deferred['orders']} orders wait out a retry or rate limit"
                f" until {deferred['until']}"
            ),
        )
    for wait in status.get("waiting_on", []):
        yield (
            "waiting on",
            f"circuit {wait['circuit']}: {wait['orders']} orders until {wait['open_until']}",
        )
    yield from window_rows(status)  # scheduled stages (docs/schedules.md)


def _count(value: int, total: int) -> str:
    share = f" ({100 * value / total:.1f} %)" if total else ""
    return f"{value}{share}"


def _eta(status: dict[str, Any]) -> str:
    seconds = status.get("estimated_time_remaining")
    if seconds is None:
        return "unknown (no order has ended yet)"
    if status.get("finalized_at"):
        return "0 s (ended)"
    human = status.get("eta_human") or f"{seconds:g} s"
    return human if seconds < 60 else f"{human} ({seconds:g} s)"


def _lineage_rows(status: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if status.get("origin_batch_id"):
        yield "recovers", f"{status['origin_batch_id']} (round {status.get('recovery_round')})"
    if status.get("recovered_by"):
        yield "recovered by", ", ".join(status["recovered_by"])


def stages_table(status: dict[str, Any]) -> Table:
    """Per stage: orders waiting for or in it now, done, failed."""
    table = Table(title="stages")
    for column in ("stage", "waiting or running", "done", "failed"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in STAGE_NAMES:
        counts = status["stages"][stage]
        waiting = status.get("in_stage", {}).get(stage, 0)
        table.add_row(stage, str(waiting), str(counts["done"]), str(counts["failed"]))
    return table


def failures_table(failures: Sequence[dict[str, str]], failed: int) -> Table:
    """The failed orders shown (the first N of ``failed``): class, code and reason."""
    table = Table(title=f"failed orders ({len(failures)} of {failed})")
    # Ids, classes and codes whole (they are what an operator copies); the reason wraps.
    for column in ("order", "stage", "error class", "code"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", ratio=1)
    for failure in failures:
        table.add_row(
            failure["order_id"],
            failure["stage"],
            failure["error_class"],
            failure["code"],
            escape(failure["reason"][:100]),
        )
    return table
