"""Notifications reach a real HTTP receiver signed and once per (batch, kind), even after a kill.

A real worker process (concurrency 1, every queue), real beat (the sweeper
resends what a dead sender left), real ledger and a local receiver that checks
every signature. The receiver holds the first ``finalized`` POST; meanwhile the
test SIGKILLs the pool process sending it. The event was recorded in the ledger
first, so the sweeper sends it again after the sender's lease, with the same
event id: the receiver gets every kind under exactly one event id.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cli.workers import ALL_LANES, spawn_beat, spawn_worker, stop_workers
from ledger.db import transaction
from ledger.notifications import sent_at
from pipeline.notify import SIGNATURE_HEADER, verify
from tests.integration.helpers import make_orders, submit_in_child, wait_for_final, wait_until
from tests.support_processes import child_pids

pytestmark = pytest.mark.integration

NOTIFY_REDIS_DB = 5
SECRET = "test-secret"
KINDS = ("progress_25", "progress_50", "progress_75", "progress_100", "finalized")


class Receiver:
    """Records every POST (kind, event id, signature valid); can hold one kind's first POST."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[dict[str, Any]] = []
        self.hold_kind: str | None = None
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                message = json.loads(body)
                valid = verify(body, SECRET, self.headers.get(SIGNATURE_HEADER, ""))
                with receiver.lock:
                    first = not any(s["kind"] == message["kind"] for s in receiver.seen)
                    receiver.seen.append({**message, "valid": valid})
                    hold = first and message["kind"] == receiver.hold_kind
                if hold:
                    receiver.release.wait(30)
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, batch_id: str, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [s for s in self.seen if s["batch_id"] == batch_id and s["kind"] == kind]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    try:
        yield found
    finally:
        found.close()


def _env(service_env: dict[str, str], redis_url: str, url: str) -> dict[str, str]:
    return {
        **service_env,
        "REDIS_URL": redis_url,
        "BATCH_NOTIFY_URLS": url,
        "BATCH_NOTIFY_SECRET": SECRET,
        "BATCH_NOTIFY_TIMEOUT_SECONDS": "2",
        "BATCH_NOTIFY_MAX_ATTEMPTS": "1",
    }


def _all_sent(batch_id: str) -> bool:
    with transaction() as session:
        return all(sent_at(session, batch_id, kind) for kind in KINDS)


def test_each_event_arrives_signed_under_one_event_id_despite_a_killed_sender(
    service_env: dict[str, str],
    tmp_path: Path,
    isolated_redis: Callable[[int], str],
    receiver: Receiver,
) -> None:
    env = _env(service_env, isolated_redis(NOTIFY_REDIS_DB), receiver.url)
    receiver.hold_kind = "finalized"
    worker = spawn_worker(
        ALL_LANES, concurrency=1, name="notify", env=env, log_path=tmp_path / "w.log"
    )
    beat = spawn_beat(env=env, log_path=tmp_path / "beat.log", schedule_path=tmp_path / "sched")
    tag = f"notify-{uuid.uuid4().hex[:6]}"
    try:
        # Given a batch that runs to the end
        submit_in_child(
            [{"id": tag, "priority": "high", "orders": make_orders(8, tag)}], env, tmp_path
        )
        assert wait_for_final([tag], timeout=120) == {tag: "COMPLETED"}
        # When the pool process dies while its finalized POST waits for the answer
        wait_until(lambda: bool(receiver.of(tag, "finalized")), timeout=60)
        started = time.monotonic()
        for child in child_pids(worker.pid):
            os.kill(child, signal.SIGKILL)
        receiver.release.set()
        # Then the sweeper sends it again and every kind ends marked sent
        wait_until(lambda: _all_sent(tag) and len(receiver.of(tag, "finalized")) >= 2, timeout=90)
        resent_after = time.monotonic() - started
    finally:
        stop_workers([beat, worker])
    for kind in KINDS:
        got = receiver.of(tag, kind)
        assert got and all(s["valid"] for s in got), kind
        assert len({s["event_id"] for s in got}) == 1, kind  # one event, however often sent
    assert len(receiver.of(tag, "progress_100")) == 1  # no kill: sent exactly once
    finalized = receiver.of(tag, "finalized")[-1]
    assert finalized["data"]["status"] == "COMPLETED"
    assert finalized["data"]["counts"] == {"DELIVERED": 8}
    print(f"\nfinalized notice resent {resent_after:.1f}s after the kill")
