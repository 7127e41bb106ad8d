"""The ``batchline`` command: demo, submit, status, worker and db upgrade."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cli.api_cmd import api, api_key_app
from cli.batches_cmd import batches
from cli.catalog_cmd import catalog_app
from cli.exporter_cmd import exporter
from cli.failures_cmd import failures
from cli.flower_cmd import flower
from cli.monitor_cmd import monitor
from cli.recover_cmd import recover
from cli.report_cmd import report
from cli.schedule_cmd import schedule
from cli.status_cmd import status, warn_if_halted
from cli.workers import DEFAULT_LANES
from pipeline.settings import SettingsError, get_settings

app = typer.Typer(
    help="batchline: backlink batches through preflight, writing, QC and delivery.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Ledger schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(catalog_app, name="catalog")
app.add_typer(api_key_app, name="api-key")
app.command("api")(api)
app.command("failures")(failures)
app.command("recover")(recover)
app.command("flower")(flower)
app.command("exporter")(exporter)
app.command("report")(report)
app.command("schedule")(schedule)
app.command("status")(status)
app.command("batches")(batches)
app.command("monitor")(monitor)
console = Console()
errors = Console(stderr=True, soft_wrap=True)  # one error, one unbroken line


def _fail(message: str, code: int = 2) -> None:
    errors.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@app.callback()
def _check_settings(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at LOG_LEVEL.")] = False,
) -> None:
    from metrics.logs import configure_logging

    try:
        settings = get_settings()
    except SettingsError as error:
        _fail(str(error))
    # The CLI's own output is the interface; its logs stay quiet unless asked for.
    configure_logging(settings.log_level if verbose else "WARNING", settings.log_format)


@app.command()
def demo(
    orders: Annotated[int, typer.Option(min=3, max=100_000, help="How many sample orders.")] = 200,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    scheduled: Annotated[
        bool, typer.Option("--scheduled", help="Run every stage in windows a few seconds apart.")
    ] = False,
    api: Annotated[
        bool, typer.Option("--api", help="Serve the HTTP API and its batches page beside it.")
    ] = False,
    api_port: Annotated[int, typer.Option(min=1, max=65535, help="Port of --api.")] = 8080,
    hold: Annotated[
        bool, typer.Option("--hold", help="With --api: keep serving after the run, to Ctrl-C.")
    ] = False,
) -> None:
    """Start servers if needed, run workers, process sample batches at all priorities."""
    from cli.demo import ApiOptions, run_demo
    from cli.environment import prepared_environment
    from cli.render import failures_table, summary_table, timings_table

    quiet = Console(stderr=True) if as_json else console
    with prepared_environment() as urls:
        if urls.started:
            quiet.print(f"started embedded {', '.join(urls.started)}")
        serve = ApiOptions(port=api_port, hold=hold) if api else None
        timeout = 600.0 if scheduled else 240.0
        summary = run_demo(orders, quiet, timeout, scheduled=scheduled, api=serve)
        summary["started_services"] = list(urls.started)
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        console.print(summary_table(summary))
        console.print(timings_table(summary["stage_timings"]))
        console.print(f"articles and receipts: {summary['articles_dir']}")
        console.print(
            f"rewrites: QC sent an article back to the writer {summary['rewrites']} times"
        )
        if summary["failures"]:
            console.print(failures_table(summary["failures"]))
    if summary["delivered"] == 0 or any(
        b["status"] not in ("completed", "partial") for b in summary["batches"]
    ):
        raise typer.Exit(1)


def _read_manifest(path: Path) -> Any:
    """Parse a JSON list or JSONL file; raise ``ValueError`` naming the line that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    if path.suffix != ".jsonl":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON: {error}") from None
        except RecursionError:
            raise ValueError(f"{path}: not valid JSON: nested too deeply") from None
    documents = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            documents.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} line {number}: not valid JSON: {error.msg}") from None
        except RecursionError:
            raise ValueError(f"{path} line {number}: not valid JSON: nested too deeply") from None
    return documents


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSON or JSONL.")],
    priority: Annotated[str, typer.Option(help="high, normal or low.")] = "",
    project: Annotated[str, typer.Option(help="Project the batch belongs to.")] = "default",
    batch_id: Annotated[str, typer.Option(help="Client-chosen batch id.")] = "",
) -> None:
    """Submit a batch of orders from FILE (a JSON list, or one order per JSONL line)."""
    from pipeline.manifest import ManifestError
    from tasks import submit_batch

    try:
        documents = _read_manifest(file)
    except ValueError as error:
        _fail(str(error))
    options = {"batch_id": batch_id} if batch_id else {}
    try:
        result = submit_batch(documents, project, priority or None, options)
    except ManifestError as error:
        _fail(str(error))
    print(json.dumps(result))
    warn_if_halted()


@app.command()
def worker(
    lanes: Annotated[
        str, typer.Option(help="Comma-separated: maintenance, recovery, high, normal, low.")
    ] = ",".join(DEFAULT_LANES),
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Processes (default BATCH_WORKER_CONCURRENCY).")
    ] = None,
    io_threads: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Chunks of writing/delivery run at once by a threads worker beside the "
            "processes (default BATCH_IO_WORKER_THREADS; 0: the processes run them).",
        ),
    ] = None,
    events: Annotated[
        bool, typer.Option(help="Pass -E (task events are on by default, for Flower).")
    ] = False,
) -> None:
    """Run Celery workers on the given lanes (strict priority order)."""
    from cli.supervisor import command as supervisor_command
    from cli.workers import default_workers, worker_command

    chosen = [lane.strip() for lane in lanes.split(",") if lane.strip()]
    settings = get_settings()
    threads = settings.batch_io_worker_threads if io_threads is None else io_threads
    specs = default_workers(
        chosen,
        concurrency or settings.batch_worker_concurrency,
        threads,
        f"batchline-{'-'.join(chosen)}",
        settings.batch_io_worker_processes,
    )
    try:
        argvs = [
            worker_command(
                spec.lanes,
                spec.concurrency,
                spec.name,
                loglevel=settings.log_level,
                events=events,
                kind=spec.kind,
            )
            for spec in specs
        ]
    except ValueError as error:
        _fail(str(error))
    # Either way this process becomes what it starts: the one worker, or a supervisor
    # that imports nothing of the CLI's (cli.supervisor), under the same pid.
    argv = argvs[0] if len(argvs) == 1 else supervisor_command(argvs)
    os.execv(sys.executable, argv)


@app.command()
def order(
    order_id: str,
    batch_id: Annotated[str, typer.Option("--batch", help="Only this batch.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print every stored output.")] = False,
) -> None:
    """Show an order's journey: every stage output, its QC reports and its receipt."""
    from cli.render import journey_table
    from ledger.db import transaction
    from ledger.reports import order_journey

    with transaction() as session:
        journeys = order_journey(session, order_id, batch_id or None)
    if not journeys:
        _fail(f"no order with id {order_id!r}", code=1)
    if as_json:
        print(json.dumps(journeys, indent=2))
        return
    for journey in journeys:
        console.print(journey_table(journey))
        if journey["receipt"]:
            console.print(f"receipt: {json.dumps(journey['receipt'])}")


def _control(action: str, *args: str) -> None:
    import tasks.control as control

    try:
        result = getattr(control, action)(*args)
    except control.ControlRefused as error:
        _fail(str(error), code=1)
    print(json.dumps(result))


@app.command()
def pause(batch_id: str) -> None:
    """Pause a batch: nothing new is claimed, running chunks finish."""
    _control("pause_batch", batch_id)


@app.command()
def resume(batch_id: str) -> None:
    """Resume a paused batch and send its waiting orders out again."""
    _control("resume_batch", batch_id)


@app.command()
def cancel(batch_id: str) -> None:
    """Cancel a batch: waiting orders end as CANCELLED, then the batch is finalized."""
    _control("cancel_batch", batch_id)


@app.command()
def delete(batch_id: str) -> None:
    """Delete a finalized batch's orders and outputs; its delivery receipts stay."""
    from pipeline.errors import UnknownBatch
    from tasks.deletion import DeleteRefused, delete_batch

    try:
        result = delete_batch(batch_id)
    except (DeleteRefused, UnknownBatch) as error:
        _fail(str(error), code=1)
    print(json.dumps(result))


@app.command()
def halt(reason: Annotated[str, typer.Option(help="Why; kept in the ledger.")]) -> None:
    """Stop all workers from claiming work (as a CRITICAL error does)."""
    _control("halt_all", reason)


@app.command("resume-all")
def resume_all() -> None:
    """Lift a halt after inspection; all waiting work is sent out again."""
    _control("resume_all")


@app.command()
def sweep() -> None:
    """Run the sweeper once now (beat runs it every BATCH_SWEEP_INTERVAL_SECONDS)."""
    from recovery.sweeper import sweep as run_sweep

    print(json.dumps(run_sweep().as_dict()))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the ledger's migrations to DATABASE_URL."""
    from ledger.migrate import upgrade

    try:
        upgrade(get_settings().require_database_url())
    except SettingsError as error:
        _fail(str(error))
    console.print("ledger schema is up to date")


def main() -> None:
    """Entry point of ``batchline``: configuration and embedded-server errors end in one line."""
    from rich.markup import escape

    from cli.embedded import EmbeddedServiceError

    try:
        app()
    except (SettingsError, EmbeddedServiceError) as error:
        errors.print(f"[red]error:[/red] {escape(str(error))}")
        raise SystemExit(2) from None
