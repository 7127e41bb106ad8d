"""Test support for the HTTP API: a real ``batchline api`` process, keys, an SSE reader."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from api.server import free_port, spawn_api, wait_until_alive
from cli.workers import stop_workers


@dataclass(frozen=True)
class ApiServer:
    """A running ``batchline api``: where it answers and its process id."""

    url: str
    pid: int

    def rss_mib(self) -> float:
        """The server process's resident memory now, in MiB (``VmRSS`` from ``/proc``)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")


@contextmanager
def running_api(env: Mapping[str, str], log_path: Path, timeout: float = 60) -> Iterator[ApiServer]:
    """Run ``batchline api`` on a free port for the block."""
    port = free_port()
    process = spawn_api("127.0.0.1", port, env=env, log_path=log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_alive(base, process, timeout)
        yield ApiServer(base, process.pid)
    finally:
        stop_workers([process])


def make_key(scope: str, *projects: str) -> tuple[str, str]:
    """A new API key in the ledger: ``(token, key_id)``."""
    from ledger.api_keys import create_key
    from ledger.db import transaction
    from pipeline.api_access import Scope

    with transaction() as session:
        return create_key(session, name=f"test-{scope}", scope=Scope(scope), projects=projects)


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event."""

    id: str
    kind: str
    data: dict[str, Any]


def read_events(
    client: httpx.Client,
    url: str,
    *,
    last_event_id: str | None = None,
    stop_after: int | None = None,
    timeout: float = 180,
    on_first: Callable[[], object] | None = None,
) -> list[Event]:
    """Read ``url``'s event stream until it ends (or ``stop_after`` events arrived).

    ``on_first`` is called once, when the first event has arrived.
    """
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    events: list[Event] = []
    fields: dict[str, str] = {}
    with client.stream("GET", url, headers=headers, timeout=timeout) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(": ")
                fields[name] = value
                continue
            if fields:
                events.append(Event(fields["id"], fields["event"], json.loads(fields["data"])))
                fields = {}
                if on_first is not None and len(events) == 1:
                    on_first()
                if stop_after is not None and len(events) >= stop_after:
                    break
    return events
