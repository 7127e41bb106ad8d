"""``batchline report ID [--out FILE.html|FILE.png]``: a batch's report, as charts or a page.

Without ``--out`` the report (``BatchMetricsCollector.get_performance_report``) is
printed as JSON; with it, ``metrics.report`` draws the charts into a PNG or a
self-contained HTML page.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)
errors = Console(stderr=True, soft_wrap=True)  # one error, one unbroken line

_SUFFIXES = (".html", ".htm", ".png")


def _fail(message: str, code: int = 2) -> NoReturn:
    errors.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def report(
    batch_id: Annotated[str, typer.Argument(help="The batch to report on.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Write FILE.html (charts and tables) or FILE.png (charts)."),
    ] = None,
) -> None:
    """Report how a batch ran: throughput, latency, waits in the pool, failures."""
    from metrics.collector import BatchMetricsCollector, UnknownBatch

    if out is not None and out.suffix.lower() not in _SUFFIXES:
        _fail(f"--out {out}: the file must end in .html or .png")
    if out is not None and not out.parent.is_dir():
        _fail(f"--out {out}: no directory {out.parent}")
    try:
        figures = BatchMetricsCollector().get_performance_report(batch_id)
    except UnknownBatch as error:
        _fail(str(error))
    if out is None:
        print(json.dumps(figures, indent=2))
        return
    try:
        from metrics.report import write_report

        console.print(f"wrote {write_report(figures, out)}")
    except ModuleNotFoundError as error:  # the image installs no charting library
        _fail(f"--out needs matplotlib ({error.name} is missing): pip install 'batchline[report]'")
