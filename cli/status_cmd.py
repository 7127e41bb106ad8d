"""``batchline status ID [--watch] [--failures N] [--json]``: one batch, once or until it ends."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # one error, one unbroken line


def _fail(message: str, code: int) -> NoReturn:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def status(
    batch_id: str,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON (one line per refresh).")
    ] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until the batch ends.")] = False,
    interval: Annotated[
        float, typer.Option(min=0.2, help="Seconds between refreshes with --watch.")
    ] = 2.0,
    failures: Annotated[
        int, typer.Option(min=0, help="Show up to N failed orders (class, code, reason).")
    ] = 10,
) -> None:
    """Show a batch's status, progress, ETA, stages and failed orders."""
    snapshot = _snapshot(batch_id, failures)
    if not watch:
        _show(snapshot, as_json)
        return
    if as_json:
        _watch_json(batch_id, failures, interval, snapshot)
    else:
        _watch_live(batch_id, failures, interval, snapshot)


def _snapshot(batch_id: str, failures: int) -> dict[str, Any]:
    """``batch_status`` with ``failed_orders`` (the first ``failures`` of them) added."""
    from ledger.db import transaction
    from ledger.overview import failed_orders
    from pipeline.errors import UnknownBatch
    from tasks.status import batch_status

    try:
        result = batch_status(batch_id)
    except UnknownBatch as error:
        _fail(str(error), code=1)
    shown: list[dict[str, str]] = []
    if result["failed"] and failures:
        with transaction() as session:
            shown = failed_orders(session, batch_id, failures)
    return {**result, "failed_orders": shown}


def _ended(snapshot: dict[str, Any]) -> bool:
    return snapshot.get("finalized_at") is not None


def _show(snapshot: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(snapshot), flush=True)
    else:
        console.print(_frame(snapshot))


def _frame(snapshot: dict[str, Any]) -> Group:
    from cli.status_view import status_renderables

    return Group(*status_renderables(snapshot, snapshot["failed_orders"]))


def _watch_json(batch_id: str, failures: int, interval: float, snapshot: dict[str, Any]) -> None:
    _show(snapshot, as_json=True)
    while not _ended(snapshot):
        time.sleep(interval)
        snapshot = _snapshot(batch_id, failures)
        _show(snapshot, as_json=True)


def _watch_live(batch_id: str, failures: int, interval: float, snapshot: dict[str, Any]) -> None:
    # Live redraws in place on a terminal; piped, it prints the last frame once.
    with Live(_frame(snapshot), console=console, auto_refresh=False) as live:
        while not _ended(snapshot):
            time.sleep(interval)
            snapshot = _snapshot(batch_id, failures)
            live.update(_frame(snapshot), refresh=True)


def warn_if_halted() -> None:
    """Tell the operator on stderr that a halt keeps a just-accepted batch waiting."""
    from ledger.db import transaction
    from ledger.overview import current_halt

    with transaction() as session:
        halt = current_halt(session)
    if halt is not None:
        errors.print(
            f"[yellow]warning:[/yellow] the system is halted ({escape(halt.reason)}): "
            "the batch is accepted and waits until `batchline resume-all`",
            highlight=False,
        )
