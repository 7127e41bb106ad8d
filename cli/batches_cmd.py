"""``batchline batches``: the newest batches with their progress, age and failures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.states import BatchStatus
from pipeline.status import human_duration

if TYPE_CHECKING:
    from ledger.overview import BatchLine

console = Console()

_STATUSES = ", ".join(status.value.lower() for status in BatchStatus)


def batches(
    status: Annotated[str, typer.Option(help=f"Only this status: {_STATUSES}.")] = "",
    priority: Annotated[str, typer.Option(help="Only this priority: high, normal, low.")] = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most N batches.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List batches, newest first: priority, status, progress, age, failures."""
    from cli.status_view import halt_banner
    from ledger.db import transaction
    from ledger.overview import current_halt, list_batches

    _check_choice("--status", status, [s.value for s in BatchStatus])
    _check_choice("--priority", priority, ["high", "normal", "low"])
    with transaction() as session:
        lines = list_batches(session, status=status, priority=priority, limit=limit)
        halt = current_halt(session)
    now = datetime.now(UTC)
    if as_json:
        document: dict[str, Any] = {
            "halted": halt is not None,
            "halt": halt.as_dict() if halt else None,
            "batches": [{**line.as_dict(), **_derived(line, now)} for line in lines],
        }
        print(json.dumps(document))
        return
    if halt is not None:
        console.print(halt_banner(halt.reason))
    console.print(batches_table(lines, now))


def _check_choice(option: str, value: str, allowed: Sequence[str]) -> None:
    if value and value.upper() not in {choice.upper() for choice in allowed}:
        raise typer.BadParameter(
            f"{value!r} is not one of {', '.join(a.lower() for a in allowed)}", param_hint=option
        )


def _derived(line: BatchLine, now: datetime) -> dict[str, Any]:
    """Progress in percent and age in seconds, as the table shows them."""
    progress = 100.0 * line.ended / line.total if line.total else 100.0
    return {
        "progress_percentage": round(progress, 2),
        "age_seconds": round((now - line.created_at).total_seconds(), 1),
    }


def batches_table(lines: Sequence[BatchLine], now: datetime) -> Table:
    """One row per batch: id, priority, status, progress, age, failures."""
    table = Table(title=f"batches ({len(lines)}, newest first)")
    for column in ("batch", "priority", "status", "progress", "age", "failed", "cancelled"):
        table.add_column(column, justify="right" if column in ("progress", "age") else "left")
    for line in lines:
        derived = _derived(line, now)
        table.add_row(
            line.batch_id,
            line.priority,
            line.status.lower(),
            f"{line.ended}/{line.total} ({derived['progress_percentage']:g} %)",
            human_duration(derived["age_seconds"]),
            str(line.failed),
            str(line.cancelled),
        )
    if not lines:
        table.add_row("(none)", "", "", "", "", "", "")
    return table
