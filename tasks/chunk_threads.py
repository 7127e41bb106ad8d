"""Run a chunk's items concurrently in a bounded thread pool, keeping the time-limit rules.

For stages whose items wait on outside services (the writer's LLM, publishers'
webhooks), calls one after another would hold a worker process idle for the
sum of their latencies. Threads suit this: the writer and the publisher are
synchronous httpx clients (thread-safe, with a connection pool), every call
still takes a token from the shared Redis buckets, and each item's ledger
writes use their own session. The pool is bounded by ``BATCH_IO_CONCURRENCY``.
Threads rather than asyncio: with these clients an event loop spent 1.4-1.8 times
the CPU per call (``bench/io_models.py``, bench/NOTES.md).

Celery's soft time limit is raised in the main thread only; the threads carry
on. Items that had not started are cancelled and retried without spending an
attempt; calls under way get ``grace`` seconds to finish (each has its own
HTTP timeout) and are kept if they do, retried as timed out if not. Celery's
threads pool (the I/O worker ``batchline worker`` starts) enforces no time limit
at all, so the chunk's own ``deadline`` (the soft limit) ends it the same way.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace

import structlog
from celery.exceptions import SoftTimeLimitExceeded

from ledger.items import ClaimedItem
from pipeline.outcomes import ItemOutcome, Retry, out_of_time

log = structlog.get_logger(__name__)

Attempt = Callable[[ClaimedItem], ItemOutcome | None]


@dataclass(frozen=True)
class _Limits:
    """What happens to a chunk's items when its time runs out."""

    max_retries: int
    #: seconds calls under way may still finish in
    grace: float
    #: the least delay of the retry of a call still under way after the grace
    running_retry_after: float


def run_concurrently(
    claimed: Sequence[ClaimedItem],
    attempt: Attempt,
    *,
    workers: int,
    max_retries: int,
    grace: float,
    deadline: float | None = None,
    running_retry_after: float = 0.0,
) -> list[ItemOutcome]:
    """Run ``attempt`` on every item with at most ``workers`` at once; outcomes in item order.

    ``attempt`` returns None for an item it handed back (no slot). An exception an
    attempt raises (an infrastructure error) is raised here once every call has
    ended, so no thread is left running against a chunk that is being retried.
    ``deadline``: seconds the chunk may still wait for its calls (None: no limit
    but Celery's); what has not finished by then ends as at the soft time limit.
    ``running_retry_after``: the least delay of the retry of a call still under way.
    """
    limits = _Limits(max_retries, grace, running_retry_after)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="batchline-io")
    # Each call runs in a copy of the task's context: its log lines keep the bound ids.
    futures = [pool.submit(contextvars.copy_context().run, attempt, item) for item in claimed]
    try:
        _, pending = wait(futures, timeout=None if deadline is None else max(0.0, deadline))
        if pending:
            log.warning("chunk.deadline", items=len(claimed), unfinished=len(pending))
            return _out_of_time(pool, claimed, futures, limits)
    except SoftTimeLimitExceeded:
        log.warning("chunk.soft_time_limit", items=len(claimed), concurrent=True)
        return _out_of_time(pool, claimed, futures, limits)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return _collect(futures)


def _collect(futures: Sequence[Future[ItemOutcome | None]]) -> list[ItemOutcome]:
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [outcome for future in futures if (outcome := future.result()) is not None]


def _out_of_time(
    pool: ThreadPoolExecutor,
    claimed: Sequence[ClaimedItem],
    futures: Sequence[Future[ItemOutcome | None]],
    limits: _Limits,
) -> list[ItemOutcome]:
    pool.shutdown(wait=False, cancel_futures=True)
    wait([f for f in futures if not f.cancelled()], timeout=limits.grace)
    finished = [f for f in futures if f.done() and not f.cancelled()]
    outcomes = _collect(finished)
    pairs = list(zip(claimed, futures, strict=True))
    waiting = [item.item_id for item, future in pairs if future.cancelled()]
    running = [(item.item_id, item.attempts) for item, future in pairs if not future.done()]
    left = out_of_time(running, waiting, max_retries=limits.max_retries)
    still_running = {item_id for item_id, _ in running}
    return outcomes + [_not_before(o, still_running, limits.running_retry_after) for o in left]


def _not_before(outcome: ItemOutcome, running: set[int], delay: float) -> ItemOutcome:
    """A retry of a call still under way waits at least ``delay`` (see ``run_concurrently``)."""
    if isinstance(outcome, Retry) and outcome.item_id in running and outcome.delay < delay:
        return replace(outcome, delay=delay)
    return outcome
