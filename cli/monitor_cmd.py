"""``batchline monitor``: a live view of lanes, batches, slots, rate limits, halts and errors."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

console = Console()


def monitor(
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one snapshot as JSON.")] = False,
    interval: Annotated[float, typer.Option(min=0.5, help="Seconds between frames.")] = 2.0,
    page: Annotated[int, typer.Option(min=1, help="Page of open batches (high first).")] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=500, help="Open batches per page.")] = 20,
) -> None:
    """Watch the whole system (Ctrl-C ends it); --once or --json for scripts."""
    from cli.monitor_snapshot import take_snapshot
    from cli.monitor_view import monitor_frame

    if as_json:
        print(json.dumps(take_snapshot(page=page, page_size=page_size)))
        return
    if once:
        console.print(monitor_frame(take_snapshot(page=page, page_size=page_size)))
        return
    frame = monitor_frame(take_snapshot(page=page, page_size=page_size))
    try:
        with Live(frame, console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                live.update(
                    monitor_frame(take_snapshot(page=page, page_size=page_size)), refresh=True
                )
    except KeyboardInterrupt:
        return
