"""``batchline exporter``: serve batchline's Prometheus metrics over HTTP.

Each scrape of ``/metrics`` reads Redis and the ledger through
``metrics.exporter.BatchlineCollector`` (docs/metrics.md lists every metric); the
order counts come from a snapshot re-read every ``--refresh-seconds`` in the background.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

# Counting a large pool is the one part of a scrape that grows with the backlog, so
# the order counts are re-read in the background every REFRESH_SECONDS (docs/metrics.md).
from metrics.item_snapshot import REFRESH_SECONDS

console = Console(stderr=True)

#: The port batchline's exporter listens on by default (deploy/prometheus scrapes it).
DEFAULT_PORT = 9808


def exporter(
    port: Annotated[int, typer.Option(min=1, max=65_535, help="Port to listen on.")] = DEFAULT_PORT,
    host: Annotated[
        str, typer.Option(help="Address to bind (0.0.0.0 inside a container).")
    ] = "127.0.0.1",
    settle_seconds: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds new stage outputs wait before they are counted (late commits)."
        ),
    ] = 30.0,  # metrics.exporter.SETTLE_SECONDS (not imported: every command would load it)
    refresh_seconds: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds between background readings of the order counts"
            " (0: each scrape reads them).",
        ),
    ] = REFRESH_SECONDS,
) -> None:
    """Serve Prometheus metrics (lanes, pool, batches, slots, rate buckets, errors) on /metrics."""
    from prometheus_client import CollectorRegistry, start_http_server

    from metrics.exporter import BatchlineCollector

    registry = CollectorRegistry(auto_describe=False)
    collector = BatchlineCollector(settle_seconds=settle_seconds, refresh_seconds=refresh_seconds)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    console.print(f"batchline exporter: http://{host}:{server.server_port}/metrics")
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
