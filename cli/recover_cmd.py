"""``batchline recover ID``: send a finished batch's failed orders round again, once."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True, soft_wrap=True)


def recover(
    batch_id: Annotated[str, typer.Argument(help="A finished batch (original or recovery).")],
    retry_all: Annotated[
        bool, typer.Option("--all", help="Also retry MANUAL failures (cause fixed).")
    ] = False,
    priority: Annotated[
        str, typer.Option(help="Lane: high, normal or low (default: the batch's).")
    ] = "",
    order: Annotated[
        list[str] | None,
        typer.Option("--order", help="Only this order (repeatable); names PERMANENT ones too."),
    ] = None,
    max_retries: Annotated[int, typer.Option(help="Retry budget per stage in the recovery.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Recover the failed orders of BATCH_ID in a recovery batch; print it and what was skipped."""
    from pipeline.recovery import RecoveryRefused
    from recovery.recover import recover_failed_batch

    options: dict[str, Any] = {"max_retries": max_retries, "retry_all": retry_all}
    if priority:
        options["priority"] = priority
    if order:
        options["order_ids"] = order
    try:
        result = recover_failed_batch(batch_id, options)
    except RecoveryRefused as error:
        errors.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(result))
        return
    console.print(describe(result))


def describe(result: dict[str, Any]) -> str:
    """The recovery's outcome in a few lines."""
    lines = []
    if result["recovery_batch_id"]:
        lines.append(
            f"recovery batch {result['recovery_batch_id']}: "
            f"{result['documents_to_retry']} order(s) to retry (task_id {result['task_id']})"
        )
    else:
        lines.append(f"nothing to recover in {result['origin_batch_id']}")
    for reason, count in sorted(result["skipped"].items()):
        lines.append(f"skipped {count}: {reason}")
    if result.get("recovered_by"):
        lines.append(f"recovered by: {', '.join(result['recovered_by'])}")
    return "\n".join(lines)
