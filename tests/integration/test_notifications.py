"""Notifications reach a real HTTP receiver signed and once per (batch, kind), even after a kill.

A real worker process (concurrency 1, every queue), real beat (the sweeper
resends what a dead sender left), real ledger and a local receiver that checks
every signature. The receiver holds the first ``finalized`` POST; meanwhile the
test SIGKILLs the pool process sending it. The event was recorded in the ledger
first, so the sweeper sends it again after the sender's lease, with the same
event id: the receiver gets every kind under exactly one event id.

The worker and beat use a ledger database of the module's own, and the receiver
holds the first POST of this batch's ``finalized`` only: the sweeper resends
*every* unsent event in its ledger, and the session's ledger holds other tests'
(their workers stopped before sending). In CI a stranger's ``finalized`` was the
POST held, this batch's went through unheld, the kill hit nothing and the wait
for a resend timed out.
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
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from cli.workers import ALL_LANES, spawn_beat, spawn_worker, stop_workers
from ledger.notifications import (
    claim_event,
    event_key,
    queue_unsent_events,
    record_event,
    release_event,
    sent_at,
)
from pipeline.notify import SIGNATURE_HEADER, verify
from tests.integration.helpers import make_orders, submit_in_child, wait_until
from tests.support import seed_sample_catalog
from tests.support_metrics import own_ledger
from tests.support_processes import child_pids

pytestmark = pytest.mark.integration

NOTIFY_REDIS_DB = 5
SECRET = "test-secret"
KINDS = ("progress_25", "progress_50", "progress_75", "progress_100", "finalized")


class Receiver:
    """Records every POST (kind, event id, signature valid); can hold one event's first POST."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[dict[str, Any]] = []
        #: (batch id, kind) whose first POST waits for :attr:`release`
        self.hold: tuple[str, str] | None = None
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                message = json.loads(body)
                valid = verify(body, SECRET, self.headers.get(SIGNATURE_HEADER, ""))
                event = (message["batch_id"], message["kind"])
                with receiver.lock:
                    first = not any((s["batch_id"], s["kind"]) == event for s in receiver.seen)
                    receiver.seen.append({**message, "valid": valid})
                    hold = first and event == receiver.hold
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


@pytest.fixture(scope="module")
def ledger(service_env: dict[str, str]) -> Iterator[tuple[str, Engine]]:
    """A migrated ledger database of this module's own, with the sample catalog."""
    with own_ledger(service_env) as (url, engine):
        with Session(engine) as session, session.begin():
            seed_sample_catalog(session)
        yield url, engine


def _env(
    service_env: dict[str, str], redis_url: str, url: str, database_url: str
) -> dict[str, str]:
    return {
        **service_env,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BATCH_NOTIFY_URLS": url,
        "BATCH_NOTIFY_SECRET": SECRET,
        "BATCH_NOTIFY_TIMEOUT_SECONDS": "2",
        "BATCH_NOTIFY_MAX_ATTEMPTS": "1",
    }


def _all_sent(engine: Engine, batch_id: str) -> bool:
    with Session(engine) as session:
        return all(sent_at(session, batch_id, kind) for kind in KINDS)


def _finalized_status(engine: Engine, batch_id: str) -> str | None:
    with engine.connect() as connection:
        status = connection.scalar(
            text("SELECT status FROM batches WHERE id = :id AND finalized_at IS NOT NULL"),
            {"id": batch_id},
        )
    return None if status is None else str(status)


def test_each_event_arrives_signed_under_one_event_id_despite_a_killed_sender(
    service_env: dict[str, str],
    tmp_path: Path,
    isolated_redis: Callable[[int], str],
    receiver: Receiver,
    ledger: tuple[str, Engine],
) -> None:
    database_url, engine = ledger
    env = _env(service_env, isolated_redis(NOTIFY_REDIS_DB), receiver.url, database_url)
    worker = spawn_worker(
        ALL_LANES, concurrency=1, name="notify", env=env, log_path=tmp_path / "w.log"
    )
    beat = spawn_beat(env=env, log_path=tmp_path / "beat.log", schedule_path=tmp_path / "sched")
    tag = f"notify-{uuid.uuid4().hex[:6]}"
    receiver.hold = (tag, "finalized")
    try:
        # Given a batch that runs to the end
        submit_in_child(
            [{"id": tag, "priority": "high", "orders": make_orders(8, tag)}], env, tmp_path
        )
        wait_until(lambda: _finalized_status(engine, tag) is not None, timeout=120)
        assert _finalized_status(engine, tag) == "COMPLETED"
        # When the pool process dies while its finalized POST waits for the answer
        wait_until(lambda: bool(receiver.of(tag, "finalized")), timeout=60)
        started = time.monotonic()
        for child in child_pids(worker.pid):
            os.kill(child, signal.SIGKILL)
        receiver.release.set()
        # Then the sweeper sends it again and every kind ends marked sent
        wait_until(
            lambda: _all_sent(engine, tag) and len(receiver.of(tag, "finalized")) >= 2, timeout=90
        )
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


def test_the_sweeper_queues_an_unsent_event_once_until_a_sender_takes_it(
    ledger: tuple[str, Engine],
) -> None:
    _url, engine = ledger
    batch_id = f"queued-{uuid.uuid4().hex[:6]}"
    kinds = ("progress_25", "progress_50", "finalized")
    keys = {event_key(batch_id, kind) for kind in kinds}

    def take(requeue_seconds: float) -> set[str]:
        with Session(engine) as session, session.begin():
            found = queue_unsent_events(session, grace_seconds=0, requeue_seconds=requeue_seconds)
        return set(found) & keys

    # Given three events recorded and never sent
    with Session(engine) as session, session.begin():
        for kind in kinds:
            record_event(session, batch_id=batch_id, kind=kind, data={}, emergency=False)
    # When the sweeper queues them, the next sweeps leave them to those messages
    assert take(60) == keys
    assert take(60) == set()
    # Then a sender that takes one and fails gives it back to the very next sweep
    failed = event_key(batch_id, "finalized")
    with Session(engine) as session, session.begin():
        assert claim_event(session, failed, 60) is not None
        release_event(session, failed)
    assert take(0.2) == {failed}
    # And an event whose queued message was lost is queued again once the mark runs out
    time.sleep(0.3)
    assert take(60) == {failed}
    with Session(engine) as session, session.begin():
        assert claim_event(session, failed, 60) is not None  # a claim clears the mark
        assert claim_event(session, failed, 60) is None  # and holds the event
    assert take(60) == set()
