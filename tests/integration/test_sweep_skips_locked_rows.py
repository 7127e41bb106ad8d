"""Recovery never waits on a stranger's locks, and ledger sessions are bounded.

A worker frozen inside a transaction (a VM stall, a network partition) keeps its
row locks. The sweeper must skip those rows, finish its sweep, and take them back
in a later sweep once they are free. PostgreSQL itself ends a session left idle
inside a transaction, so such locks do not outlive the bound either.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ledger.db import dispose_engine, engine, transaction
from pipeline.settings import get_settings
from tests.integration.helpers import make_orders

pytestmark = pytest.mark.integration

ITEMS = 4
#: A sweep's duration bound here: the sweeper's lock wait plus ample room.
SWEEP_BOUND_SECONDS = 2.0 + 4.0


def _insert_batch_with_lost_leases(batch_id: str) -> list[int]:
    """A running batch whose items were claimed by a worker whose lease ran out.

    Inserted without publishing anything, so no worker of the session touches it.
    """
    from ledger.batches import insert_batch
    from pipeline.manifest import validate_submission

    submission = validate_submission(
        make_orders(ITEMS, batch_id), "it", "low", {"batch_id": batch_id}, max_items=100
    )
    with transaction() as session:
        ids = insert_batch(
            session, batch_id=batch_id, submission=submission, manifest_sha256="x", task_id="t"
        )
        session.execute(
            text(
                # PREFLIGHT, which reads no stored input: once the sweep pools them,
                # a session worker may run them, and a WRITING item without its
                # preflight output would be corrupted data that halts the system.
                "UPDATE items SET state = 'PREFLIGHT', lease_owner = 'frozen@elsewhere',"
                " lease_expires_at = now() - interval '1 minute' WHERE batch_id = :b"
            ),
            {"b": batch_id},
        )
    return ids


def _lease_owners(item_ids: list[int]) -> dict[int, str | None]:
    with transaction() as session:
        rows = session.execute(
            text("SELECT id, lease_owner FROM items WHERE id = ANY(:ids)"), {"ids": item_ids}
        )
        return {int(i): owner for i, owner in rows}


@pytest.fixture
def lost_batch(service_env: dict[str, str]) -> Iterator[list[int]]:
    batch_id = f"frozen-{uuid.uuid4().hex[:8]}"
    ids = _insert_batch_with_lost_leases(batch_id)
    yield ids
    with transaction() as session:  # end it, so no later test's feeder picks it up
        session.execute(
            text("UPDATE items SET state = 'CANCELLED' WHERE batch_id = :b"), {"b": batch_id}
        )
        session.execute(
            text("UPDATE batches SET status = 'CANCELLED', finalized_at = now() WHERE id = :b"),
            {"b": batch_id},
        )


@pytest.fixture
def stranger(service_env: dict[str, str]) -> Iterator[psycopg.Connection]:
    """Another session, as a frozen worker's would be: holds row locks and does nothing."""
    with psycopg.connect(service_env["DATABASE_URL"]) as connection:
        yield connection
        connection.rollback()


def _timed_sweep(results: list[float]) -> None:
    from recovery.sweeper import sweep

    started = time.monotonic()
    sweep()
    results.append(time.monotonic() - started)


def test_sweep_skips_rows_a_frozen_session_holds_and_takes_them_back_later(
    lost_batch: list[int], stranger: psycopg.Connection
) -> None:
    # Given a frozen session holding the lock of one item whose lease ran out
    frozen_item, *others = lost_batch
    stranger.execute("SELECT id FROM items WHERE id = %s FOR UPDATE", (frozen_item,))

    # When the sweeper runs
    durations: list[float] = []
    worker = threading.Thread(target=_timed_sweep, args=(durations,), daemon=True)
    worker.start()
    worker.join(timeout=SWEEP_BOUND_SECONDS)
    finished_in_time = not worker.is_alive()
    owners = _lease_owners(lost_batch)
    stranger.rollback()  # the frozen session ends (its locks go with it)
    worker.join(timeout=60)

    # Then the sweep completed at once, skipping only the locked row ...
    assert finished_in_time, f"the sweep waited on the frozen session's lock ({durations})"
    assert owners[frozen_item] == "frozen@elsewhere"
    # (taken back: pooled, or already claimed again by a live worker of the session)
    assert all(owners[item] != "frozen@elsewhere" for item in others)
    # ... and the next sweep takes it back once it is free
    _timed_sweep(durations)
    assert _lease_owners([frozen_item])[frozen_item] != "frozen@elsewhere"


def test_ledger_sessions_carry_the_lock_and_idle_bounds(service_env: dict[str, str]) -> None:
    settings = get_settings()
    with engine().connect() as connection:
        shown = {
            name: connection.execute(text(f"SHOW {name}")).scalar()
            for name in ("lock_timeout", "idle_in_transaction_session_timeout", "application_name")
        }
    assert shown["lock_timeout"] == f"{settings.batch_db_lock_timeout_ms}ms".replace("000ms", "s")
    assert shown["idle_in_transaction_session_timeout"] == (
        f"{settings.batch_db_idle_in_transaction_timeout_s // 60}min"
        if settings.batch_db_idle_in_transaction_timeout_s % 60 == 0
        else f"{settings.batch_db_idle_in_transaction_timeout_s}s"
    )
    assert str(shown["application_name"]).startswith("batchline/")


def test_postgres_ends_a_session_left_idle_in_a_transaction(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the smallest bound allowed
    monkeypatch.setenv("BATCH_DB_IDLE_IN_TRANSACTION_TIMEOUT_S", "5")
    get_settings.cache_clear()
    dispose_engine()
    try:
        # When a transaction takes a lock and its process then stalls past the bound
        with pytest.raises(DBAPIError) as ended, transaction() as session:
            session.execute(text("SELECT 1 FROM batches LIMIT 1 FOR UPDATE"))
            time.sleep(6.5)
            session.execute(text("SELECT 1"))
        # Then PostgreSQL ended the session, and with it the transaction and its locks
        assert "idle" in str(ended.value).lower() or "closed" in str(ended.value).lower()
    finally:
        monkeypatch.delenv("BATCH_DB_IDLE_IN_TRANSACTION_TIMEOUT_S")
        get_settings.cache_clear()
        dispose_engine()
