"""``batchline demo --api``: the HTTP API and its batches page beside the demo.

The API runs as a child process on the demo's servers, with an admin key made for
the run; the page's address and the key are printed before the first batch is
submitted, so the batches can be watched live from the start.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

#: Seconds ``batchline api`` may take to answer /healthz on a busy machine.
START_TIMEOUT = 90.0


def demo_key() -> str:
    """A new admin key named ``demo`` (the demo's operator may pause and recover)."""
    from ledger.api_keys import create_key
    from ledger.db import transaction
    from pipeline.api_access import Scope

    with transaction() as session:
        token, _ = create_key(session, name="demo", scope=Scope.ADMIN, projects=())
    return token


def usable_port(host: str, port: int) -> int:
    """``port`` when nothing listens on it, otherwise any free port.

    Checked by binding it: another server answering /healthz there would otherwise
    pass for ours.
    """
    from api.server import free_port

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return free_port()
    return port


@contextmanager
def demo_api(console: Console, host: str, port: int, log_dir: Path) -> Iterator[str]:
    """Serve the API for the block, after printing the page's URL and a key; yields the URL."""
    from api.server import spawn_api, wait_until_alive
    from cli.workers import stop_workers

    chosen = usable_port(host, port)
    if chosen != port:
        console.print(f"port {port} is in use: the API listens on {chosen}")
    port = chosen
    process = spawn_api(host, port, env={}, log_path=log_dir / "api.log")
    try:
        url = f"http://{host}:{port}"
        wait_until_alive(url, process, START_TIMEOUT)
        # soft_wrap: the URL and the key must stay on one line each, to be copied.
        console.print(f"batches page: {url}/", soft_wrap=True)
        console.print(f"API key (paste it into the page): {demo_key()}", soft_wrap=True)
        yield url
    finally:
        stop_workers([process])


def hold(console: Console) -> None:
    """Keep serving until Ctrl-C (``--hold``: look at the finished batches)."""
    console.print("the page stays up until Ctrl-C")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
