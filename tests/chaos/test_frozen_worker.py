"""A worker frozen inside a ledger transaction for longer than its lease stalls no sweep.

As in a VM stall or a network partition: the worker's process tree is stopped
(SIGSTOP) while its session sits idle in a transaction holding row locks on the
items of its chunk. Sweeps must keep completing in bounded time (they skip the
locked rows), and after the worker wakes (SIGCONT) the batch still ends exactly
once with every order delivered once and its status matching the ledger.

Stopping the worker at that point is made deterministic from outside, without a
hook in the code: the test holds ``stage_outputs`` in SHARE mode, so a chunk
recording its outcome blocks on its first insert of an output after it has
updated its items; the test freezes the worker owning that session
(``application_name`` names the process) and only then lets the insert through.
(It used to hold the batch's row ``FOR UPDATE`` and block the receipt's foreign
key; receipts lost that key when deleting a finished batch kept them.)
"""

from __future__ import annotations

import os
import signal
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.chaos.conftest import ChaosStack, _children
from tests.integration.helpers import (
    finalize_events,
    item_states,
    make_orders,
    receipts_per_item,
    wait_for_final,
    wait_until,
)
from tests.integration.progress_checks import ledger_progress, progress_mismatches

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]

ORDERS = 300
#: Frozen this much longer than the stack's lease, so the sweeper meets the expired,
#: locked rows (the lease is the chaos scale's: 22 s at full scale, 11 s at small).
FREEZE_BEYOND_LEASE = 8.0
#: A sweep gives up on a locked step after BATCH_SWEEP_LOCK_TIMEOUT_MS (2 s by default);
#: allow a few such steps and the sweep's own work.
SWEEP_BOUND = 8.0

_BLOCKED_CHUNK = """
    SELECT a.pid, a.application_name
    FROM pg_stat_activity a
    WHERE a.wait_event_type = 'Lock' AND a.application_name LIKE 'batchline/%%'
      AND EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                  WHERE l.pid = a.pid AND c.relname = 'items' AND l.mode = 'RowExclusiveLock')
    LIMIT 1
"""


def _submit(tag: str) -> str:
    from tasks import submit_batch

    batch_id = f"{tag}-{uuid.uuid4().hex[:6]}"
    submit_batch(make_orders(ORDERS, batch_id), "chaos", "normal", {"batch_id": batch_id})
    return batch_id


def _worker_tree(stack: ChaosStack, pid: int) -> list[int]:
    """The main worker process that ``pid`` belongs to, then all its children."""
    for worker in stack.workers:
        children = _children(worker.pid)
        if worker.poll() is None and pid in (worker.pid, *children):
            return [worker.pid, *children]
    raise LookupError(f"process {pid} belongs to no chaos worker")


def _freeze_a_worker_mid_transaction(stack: ChaosStack, database_url: str) -> tuple[int, list[int]]:
    """Stop a worker whose session has updated items and holds them; return what was stopped."""
    with psycopg.connect(database_url) as gate:
        # Writers of stage outputs wait; readers (and everything else) go on.
        gate.execute("LOCK TABLE stage_outputs IN SHARE MODE")
        found: list[tuple[int, str]] = []

        def blocked() -> bool:
            found[:] = gate.execute(_BLOCKED_CHUNK).fetchall()
            return bool(found)

        wait_until(blocked, timeout=60, interval=0.02)
        backend, application = found[0]
        tree = _worker_tree(stack, int(application.split("/")[1]))
        for pid in reversed(tree):  # the chunk's child first, then its parent
            os.kill(pid, signal.SIGSTOP)
        gate.rollback()  # the frozen session's insert now completes; it holds its locks
    return backend, tree


def _session_state(database_url: str, backend: int) -> str:
    """``state: last statement`` of a backend, as ``pg_stat_activity`` shows it."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT state, left(query, 100) FROM pg_stat_activity WHERE pid = %s", (backend,)
        ).fetchone()
    return f"{row[0]}: {row[1]}" if row else "gone"


#: Lease recovery statements (any version) waiting on the frozen session's locks.
_RECOVERY_WAIT = """
    SELECT coalesce(max(extract(epoch FROM now() - query_start)), 0)
    FROM pg_stat_activity
    WHERE wait_event_type = 'Lock' AND %s = ANY(pg_blocking_pids(pid))
      AND query LIKE '%%SET lease_owner = NULL, lease_expires_at = NULL, queued_at = NULL%%'
"""


def _sweep_while_frozen(
    seconds: float, database_url: str, backend: int
) -> tuple[list[float], int, float]:
    """Sweep again and again for ``seconds``.

    Returns the durations of this process's completed sweeps, how many found the
    sweeper's lock taken (beat's sweep held it), and the longest any sweeper (beat's
    too) was seen waiting on the frozen session's locks.
    """
    from recovery.sweeper import sweep

    durations: list[float] = []
    skipped = 0
    longest_wait = 0.0
    until = time.monotonic() + seconds
    with psycopg.connect(database_url, autocommit=True) as observer:
        while time.monotonic() < until:
            started = time.monotonic()
            report = sweep()
            if report.skipped:  # beat's sweep holds the lock right now
                skipped += 1
            else:
                durations.append(time.monotonic() - started)
            row = observer.execute(_RECOVERY_WAIT, (backend,)).fetchone()
            longest_wait = max(longest_wait, float(row[0]) if row else 0.0)
            time.sleep(0.2)
    return durations, skipped, longest_wait


def test_a_frozen_worker_stalls_no_sweep_and_the_batch_ends_once(
    chaos_stack: ChaosStack, chaos_report: dict[str, Any]
) -> None:
    database_url = chaos_stack.env["DATABASE_URL"]
    lease = float(chaos_stack.env["BATCH_LEASE_SECONDS"])
    batch_id = _submit("frozen")
    wait_until(lambda: ledger_progress(batch_id)["completed"] >= 20, timeout=120, interval=0.01)

    # Given a worker frozen while its session holds its chunk's item locks
    backend, tree = _freeze_a_worker_mid_transaction(chaos_stack, database_url)
    frozen_at = time.monotonic()
    try:
        wait_until(lambda: _session_state(database_url, backend).startswith("idle in tr"), 5)
        # When sweeps run for longer than the lease
        freeze = lease + FREEZE_BEYOND_LEASE
        durations, skipped, waited = _sweep_while_frozen(freeze, database_url, backend)
        state_at_end = _session_state(database_url, backend)
    finally:
        for pid in tree:
            os.kill(pid, signal.SIGCONT)
    frozen_for = time.monotonic() - frozen_at

    # Then every sweep completed in bounded time while the worker was frozen ...
    assert durations, "no sweep completed while the worker was frozen"
    assert max(durations) <= SWEEP_BOUND, durations
    assert waited < 1.0, f"a sweeper waited {waited:.1f}s on the frozen session's locks"
    # ... and once it wakes, the batch ends exactly once, each order delivered once
    wait_for_final([batch_id], timeout=180)
    states = item_states(batch_id)
    delivered = sum(1 for state in states.values() if state == "DELIVERED")
    assert set(states.values()) <= {"DELIVERED", "FAILED"}
    assert set(receipts_per_item(batch_id).values()) <= {1}
    published = list((Path(chaos_stack.env["BATCH_OUTPUT_DIR"]) / batch_id).glob("*.receipt.json"))
    assert len(published) == delivered
    assert finalize_events(batch_id) == 1
    assert progress_mismatches([batch_id]) == {}
    chaos_report["frozen_worker"] = {
        "orders": ORDERS,
        "delivered": delivered,
        "frozen_seconds": round(frozen_for, 1),
        "lease_seconds": lease,
        "frozen_session_at_end_of_freeze": state_at_end,
        "sweeps_completed_while_frozen": len(durations),
        "sweeps_skipped_lock_held_by_beat": skipped,
        "longest_recovery_wait_on_frozen_locks_seconds": round(waited, 2),
        "sweep_seconds_max": round(max(durations), 3),
        "sweep_seconds_median": round(statistics.median(durations), 3),
    }
