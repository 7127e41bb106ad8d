"""Run one stage over one chunk: claim, call the pure handlers, record, report.

This is the thin shell around the core. One failing item never fails its chunk
(each item runs in its own ``try``); the ledger decides which items this run
may touch; outcomes of the whole chunk are recorded in one transaction. What
each item's result or error becomes (``Done | Failed | Rewrite | Retry | Halt``)
is decided by ``pipeline.outcomes``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import structlog
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError
from sqlalchemy.orm import Session

from ledger.controls import halt
from ledger.db import transaction
from ledger.items import (
    ClaimedItem,
    Outcome,
    claim_items,
    defer_items,
    latest_outputs,
    record_outcomes,
    release_items,
    store_receipts,
)
from ledger.pool import unqueue
from metrics.batch_waits import chunk_fields
from metrics.redis_client import redis_client
from metrics.task_context import bound_order
from pipeline.chunk import ChunkMessage
from pipeline.errors import DataCorruption
from pipeline.manifest import OrderDocument
from pipeline.notify import HALTED
from pipeline.outcomes import (
    ChunkSummary,
    Deferred,
    Done,
    Failed,
    Halt,
    ItemOutcome,
    Retry,
    Rewrite,
    not_prepared,
    out_of_time,
    outcome_of_error,
    summarise,
    with_span,
)
from pipeline.polling import poll_until
from pipeline.settings import get_settings
from pipeline.stage_registry import Stage, stage_named
from pipeline.states import ItemState
from pipeline.wait_tally import WaitTally, tallying
from tasks.chunk_threads import run_concurrently
from tasks.circuits import ChunkCircuits, seconds_until
from tasks.fused import Decision, fused_row, run_fused, stage_to_fuse
from tasks.handlers import StageContext
from tasks.infrastructure import INFRASTRUCTURE_ERRORS
from tasks.notify import record_notification
from tasks.refill import REFILL_AFTER_CALLS_OF_S, refill_after_call
from tasks.slot_order import blockers, pause_until_handed, waiting
from tasks.slots import SlotUser, give_back, is_capped, slot_claim, take_slots
from tasks.stage_runtime import StageRuntime, runtime_for
from tasks.yielding import HigherWorkWatch

log = structlog.get_logger(__name__)


@dataclass
class ChunkReport:
    """What happened to a chunk, after its outcomes were committed."""

    claimed: int = 0
    summary: ChunkSummary = field(default_factory=ChunkSummary)
    #: claimed but handed back for want of a concurrency slot
    unslotted: int = 0
    #: this chunk held (and has now given back) concurrency slots
    released_slots: bool = False
    #: item id -> order id of the items that failed (what Flower's result names)
    failed_orders: dict[int, str] = field(default_factory=dict)
    #: retries, deferrals and limit waits for ``metrics:batch-waits:<batch_id>``
    waits: dict[str, int] = field(default_factory=dict)
    #: the next stage, when this chunk ran it on its successes (``pipeline.fusing``)
    fused_stage: str | None = None
    #: what that stage decided, as recorded (its successes, failures and rewrites)
    fused: ChunkSummary = field(default_factory=ChunkSummary)

    @property
    def succeeded(self) -> list[int]:
        """Items the stage moved on."""
        return list(self.summary.succeeded)

    @property
    def failed(self) -> list[int]:
        """Items that failed for good."""
        return list(self.summary.failed)

    @property
    def rewrites(self) -> list[int]:
        """Items QC sent back to the writer."""
        return list(self.summary.rewrites)

    @property
    def retry_ids(self) -> list[int]:
        """Items the chunk's retry message runs again."""
        return self.summary.retry_ids

    @property
    def retry_delay(self) -> float:
        """Seconds until the retry message runs."""
        return self.summary.retry_delay

    @property
    def halted(self) -> bool:
        """A CRITICAL error halted all processing."""
        return bool(self.summary.halts)

    @property
    def failure_classes(self) -> dict[str, int]:
        """Error class -> how many of the chunk's orders failed with it."""
        return self.summary.failure_classes


def run_chunk(message: ChunkMessage, owner: str, *, reclaim: bool = False) -> ChunkReport:
    """Claim the chunk's items, run the stage on each, commit all outcomes at once.

    ``reclaim``: the message is a retry or a redelivery, so leases its earlier run
    holds under the same task id may be taken back. An outage of the ledger or
    Redis anywhere here gives the claimed items their attempt back before it is
    raised for Celery to retry the chunk.
    """
    runtime = runtime_for(message.stage)
    claimed, inputs = _claim(runtime.stage, message, owner, reclaim)
    run = ChunkRun(runtime, message, owner, inputs)
    try:
        outcomes = _outcomes(run, claimed) if claimed else []
        _fuse(run, claimed, outcomes)
        report = _commit(run, claimed, outcomes)
    except INFRASTRUCTURE_ERRORS:
        _refund(claimed, owner)
        raise
    finally:
        run.give_back_all()  # only on an exception is anything still held here
    return report


@dataclass
class ChunkRun:
    """One run of a chunk: what its items share, and the slots they hold right now.

    An item takes its concurrency slots just before its call and gives them back
    right after, so a slot is held for the call, not for the whole chunk. Items
    of an I/O-bound stage run in threads, hence the lock.
    """

    runtime: StageRuntime
    message: ChunkMessage
    owner: str
    inputs: dict[int, object]
    prepared: dict[int, object] = field(default_factory=dict)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: monotonic clock at the start, for the chunk's own deadline
    began: float = field(default_factory=time.monotonic)
    #: items that found no free slot: back to the pool, attempt refunded
    unslotted: list[int] = field(default_factory=list)
    #: items not started because a higher lane's work waited (``tasks.yielding``)
    yielded: list[int] = field(default_factory=list)
    #: some item held (and gave back) a slot, so waiting work may fit now
    used_slots: bool = False
    #: the circuit breakers as this chunk sees them (items bound for an open one wait)
    circuits: ChunkCircuits = field(default_factory=ChunkCircuits)
    #: time this chunk's calls slept for call slots and rate-limit tokens
    waits: WaitTally = field(default_factory=WaitTally)
    #: the next stage, run on this chunk's successes in the same task (or None)
    fused_stage: Stage | None = None
    #: item id -> that stage's decision, for the items it judged in time
    fused: dict[int, Decision] = field(default_factory=dict)
    _held: set[SlotUser] = field(default_factory=set)
    #: holders whose call is under way: their own thread gives their slots back
    _calling: set[SlotUser] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        #: whether a higher lane's message waits for this worker (``tasks.yielding``):
        #: one watch per chunk, asked between items or by items waiting for slots
        self.higher = HigherWorkWatch(self.message.priority)

    @property
    def stage(self) -> Stage:
        """The stage this chunk runs."""
        return self.runtime.stage

    def take(self, user: SlotUser) -> bool:
        """Take ``user``'s slots (True at once for an uncapped stage).

        An item of an I/O-bound stage waits up to ``BATCH_SLOT_WAIT_SECONDS`` for
        them, never past half the time left before the chunk's soft limit. The
        feeder sends work for the slots it sees free, and two feeds (every call
        that ends refills) may count the same one: the later chunk finds it taken.
        Waiting a moment for the next call to end keeps that slot busy without a
        round trip through the ledger and the queue. Its threads are cheap; a
        CPU-bound stage would hold a process, so it never waits. A waiting item of a
        lower lane gives way once higher-lane work waits for this worker
        (``tasks.yielding``): it is noted among ``yielded`` and False is returned.
        """
        if not self._take(user):
            return False
        if is_capped(user.stage):
            with self._lock:
                self._held.add(user)
                self.used_slots = True
        return True

    def _take(self, user: SlotUser) -> bool:
        client, lane, claim = redis_client(), self.message.priority, slot_claim(user)
        above = blockers(lane)  # strict lane order at the slots too (``tasks.slot_order``)

        def attempt() -> bool:
            return take_slots(client, [user], above)[0]

        if attempt():
            return True
        if not self.stage.io_bound:
            return False  # a CPU-bound stage would hold a process: it never waits
        settings = get_settings()
        left = settings.batch_task_soft_time_limit - (time.monotonic() - self.began)
        seconds = max(0.0, min(settings.batch_slot_wait_seconds, left / 2))
        higher = self.higher
        gave_way = False

        def attempt_or_give_way() -> bool:
            # Higher-lane work waiting for this worker: stop waiting, so that this
            # chunk ends with its calls under way and its thread takes that work.
            nonlocal gave_way
            gave_way = higher.waiting()
            return gave_way or attempt()

        def pause(pause_s: float) -> None:
            pause_until_handed(client, claim.holder, pause_s)  # woken or not: poll

        with waiting(client, lane, claim, seconds, user.rank):
            # It just failed; a release that hands it a slot ends its pause at once.
            took = poll_until(attempt_or_give_way, seconds, tried=True, sleep=pause)
        if gave_way:
            give_back(client, [user])  # a slot handed to it meanwhile goes to the next
            with self._lock:
                self.yielded.append(user.item_id)
            return False
        # Out of the waiter set now: a slot handed over after its last look is its own.
        return took or attempt()

    def give_back(self, user: SlotUser) -> bool:
        """Give ``user``'s slots back; whether it held any."""
        with self._lock:
            if user not in self._held:
                return False
            self._held.discard(user)
        give_back(redis_client(), [user])
        return True

    def no_slot(self, item_id: int) -> None:
        """Note that ``item_id`` found no free slot: it goes back to the pool.

        An item that gave way to higher-lane work is already among ``yielded``:
        it goes back the same way but is no slot deferral in the chunk's report.
        """
        with self._lock:
            if item_id not in self.yielded:
                self.unslotted.append(item_id)
            # A chunk-mate holds a slot: the commit is a call away, so don't wait for it.
            commit_is_a_call_away = bool(self._held)
        if commit_is_a_call_away:
            self._release_now(item_id)

    def _release_now(self, item_id: int) -> None:
        """Put an item that will not run back in the pool now, not at the chunk's commit.

        The chunk commits when its slowest call ends: with a 10-60 s writer the item
        would sit out a whole call outside both the pool and the slots, where no slot
        that came free meanwhile could take it (the fairness benchmark's nine equal
        customers finished up to 22 s apart, within 2 s once released at once;
        bench/NOTES.md, "Items that found no slot wait out their chunk"). An outage
        here leaves it to the commit, whose release skips what this one gave back
        (the update only touches rows still leased to this chunk).
        """
        try:
            with transaction() as session:
                release_items(session, [item_id], self.owner, refund_attempt=True)
        except INFRASTRUCTURE_ERRORS:
            log.warning("chunk.early_release_failed", item_id=item_id)

    def calling(self, user: SlotUser, under_way: bool) -> None:
        """Note that ``user``'s call started (True) or ended (False)."""
        with self._lock:
            (self._calling.add if under_way else self._calling.discard)(user)

    def give_back_all(self) -> None:
        """Give back what is still held (after an error or the deadline cut items short).

        Not the slots of calls still under way: a thread cannot be stopped, so a
        call past the chunk's deadline keeps its slot until it ends (its thread
        gives it back, or the lease runs out), and the cap counts it meanwhile.
        """
        with self._lock:
            held = [user for user in self._held if user not in self._calling]
            self._held.difference_update(held)
        if held:
            give_back(redis_client(), held)


def _fuse(run: ChunkRun, claimed: list[ClaimedItem], outcomes: list[ItemOutcome]) -> None:
    """Run the next stage on the chunk's successes when the boundary may fuse."""
    run.fused_stage = stage_to_fuse(run.stage, run.message.priority)
    if run.fused_stage is None or not outcomes:
        return
    run.fused = run_fused(run.fused_stage, run.message, claimed, outcomes, run.began)
    for decision in run.fused.values():
        _log_outcome(run.fused_stage.name, decision)


def _refund(claimed: list[ClaimedItem], owner: str) -> None:
    """An outage is never the order's fault: give its attempt back before Celery retries."""
    try:
        with transaction() as session:
            release_items(session, [i.item_id for i in claimed], owner, refund_attempt=True)
    except INFRASTRUCTURE_ERRORS:
        log.warning("chunk.refund_failed", items=len(claimed))  # the lease runs out instead


def _claim(
    stage: Stage, message: ChunkMessage, owner: str, reclaim: bool
) -> tuple[list[ClaimedItem], dict[int, object]]:
    entry_states = sorted(stage.entry_states)
    with transaction() as session:
        claimed = claim_items(
            session,
            batch_id=message.batch_id,
            item_ids=message.item_ids,
            entry_states=entry_states,
            stage_state=stage.work_state,
            owner=owner,
            lease_seconds=get_settings().batch_lease_seconds,
            reclaim=reclaim,
        )
        # Items this message may no longer run (paused batch, halt) go back to the
        # pool, where the feeder finds them again once they may run.
        missed = set(message.item_ids) - {item.item_id for item in claimed}
        unqueue(session, sorted(missed), entry_states)
        ids = [item.item_id for item in claimed]
        inputs = (
            latest_outputs(session, ids, stage.input_stage) if stage.input_stage and ids else {}
        )
    return claimed, inputs


def _slot_user(stage: Stage, item: ClaimedItem) -> SlotUser:
    # From the item's columns, not its document: a damaged document must still reach
    # its handler, which reports it (DataCorruption) instead of the chunk failing here.
    return SlotUser(item.item_id, stage.name, item.customer_id, item.publisher_domain, item.rank)


def _outcomes(run: ChunkRun, claimed: list[ClaimedItem]) -> list[ItemOutcome]:
    ids = [item.item_id for item in claimed]
    try:
        run.prepared = run.runtime.prepare(run.message.batch_id, claimed)
    except SoftTimeLimitExceeded:
        # Out of time before any order ran (a stalled worker, a slow query): no
        # order's fault, so none fails and none pays an attempt.
        log.warning("chunk.soft_time_limit", stage=run.stage.name, left=len(ids), preparing=True)
        return not_prepared(ids, "the chunk reached its soft time limit while preparing")
    except INFRASTRUCTURE_ERRORS:
        raise
    except Exception as error:  # e.g. a stored catalog entry that no longer validates
        # Every item ends with the reason (DATA: for an operator) instead of the chunk
        # failing as a whole and coming back through the sweeper for ever.
        return [_of_error(run.message, item, error, 0.0) for item in claimed]
    if run.stage.io_bound:
        return _run_concurrently(run, claimed)
    return _run_in_turn(run, claimed)


def _run_concurrently(run: ChunkRun, claimed: list[ClaimedItem]) -> list[ItemOutcome]:
    outcomes = _run_in_threads(run, claimed)
    if run.yielded:
        log.info("chunk.yielded", stage=run.stage.name, items=len(claimed), left=len(run.yielded))
    return outcomes


def _run_in_threads(run: ChunkRun, claimed: list[ClaimedItem]) -> list[ItemOutcome]:
    settings = get_settings()
    soft, hard = settings.batch_task_soft_time_limit, settings.batch_task_time_limit
    return run_concurrently(
        claimed,
        partial(attempt_item, run),
        workers=min(settings.batch_io_concurrency, len(claimed)),
        max_retries=run.message.max_retries,
        # Calls still under way when the soft limit strikes may finish before the hard one.
        grace=max(0.0, hard - soft - 5),
        # Celery's threads pool has no time limits: the chunk keeps its own.
        deadline=soft - (time.monotonic() - run.began),
        # A call still under way after the grace runs on in its thread, holding its
        # slot under the item's name: its retry waits until the call's own timeout
        # has ended it, or the two would run at once on one slot.
        running_retry_after=settings.call_timeout(run.stage.circuit) + 1.0,
    )


def _run_in_turn(run: ChunkRun, claimed: list[ClaimedItem]) -> list[ItemOutcome]:
    outcomes: list[ItemOutcome] = []
    for index, item in enumerate(claimed):
        if index and run.higher.waiting():
            run.yielded = [i.item_id for i in claimed[index:]]
            log.info("chunk.yielded", stage=run.stage.name, ran=index, left=len(run.yielded))
            break
        try:
            outcome = attempt_item(run, item)
        except SoftTimeLimitExceeded:
            # Out of time: keep what finished; the rest is retried at once.
            waiting = [i.item_id for i in claimed[index + 1 :]]
            log.warning("chunk.soft_time_limit", stage=run.stage.name, left=len(waiting) + 1)
            running = [(item.item_id, item.attempts)]
            return outcomes + out_of_time(running, waiting, max_retries=run.message.max_retries)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes


def attempt_item(run: ChunkRun, item: ClaimedItem) -> ItemOutcome | None:
    """Run one item inside its concurrency slots; None when no slot was free.

    An item without a slot goes back to the pool with its attempt refunded: the
    feeder sent it because a slot looked free, and another worker took it first.
    Every line logged meanwhile carries the item's ``order_id``.
    """
    with bound_order(item.item_id, item.document.get("order_id")), tallying(run.waits):
        return _attempt_in_slots(run, item)


def _attempt_in_slots(run: ChunkRun, item: ClaimedItem) -> ItemOutcome | None:
    waiting = run.circuits.hold(run.stage, item, run.message.batch_id)
    if waiting is not None:
        return waiting  # its circuit is open: no slot, no call, no attempt spent
    user = _slot_user(run.stage, item)
    if not run.take(user):
        run.no_slot(item.item_id)
        return None
    began = time.monotonic()
    run.calling(user, True)
    try:
        context = StageContext(run.message.batch_id, item.attempts, run.prepared.get(item.item_id))
        return _run_item(run, item, run.inputs.get(item.item_id), context)
    finally:
        run.calling(user, False)
        if run.give_back(user) and time.monotonic() - began >= REFILL_AFTER_CALLS_OF_S:
            refill_after_call()  # the slot may take waiting work before this chunk ends


def _run_item(
    run: ChunkRun, item: ClaimedItem, previous: object, context: StageContext
) -> ItemOutcome:
    began, started = datetime.now(UTC), time.perf_counter()
    outcome = _call_handler(run, item, previous, context, started)
    return with_span(outcome, (began, datetime.now(UTC)))


def _call_handler(
    run: ChunkRun, item: ClaimedItem, previous: object, context: StageContext, started: float
) -> ItemOutcome:
    try:
        order = _stored_order(item)
        output = run.runtime.handle(order, previous, context)
    except (SoftTimeLimitExceeded, *INFRASTRUCTURE_ERRORS):
        raise  # the chunk's problem, not the order's: the whole chunk is retried
    except Exception as error:  # poison isolation: one item never sinks its chunk
        waiting = run.circuits.failed(run.stage, item, run.message.batch_id, error)
        return waiting or _of_error(run.message, item, error, _elapsed_ms(started))
    run.circuits.succeeded(run.stage, item, run.message.batch_id)
    return Done(item.item_id, output, _elapsed_ms(started))


def _stored_order(item: ClaimedItem) -> OrderDocument:
    try:
        return OrderDocument.model_validate(item.document)
    except ValidationError as error:
        # It was valid when submitted: the ledger row itself has been damaged.
        raise DataCorruption(f"stored order of item {item.item_id} is no longer valid") from error


def _of_error(message: ChunkMessage, item: ClaimedItem, error: Exception, ms: float) -> ItemOutcome:
    outcome = outcome_of_error(item.item_id, error, item.attempts, message.max_retries, ms)
    _log_outcome(message.stage, outcome)
    return outcome


def _log_outcome(stage: str, outcome: ItemOutcome) -> None:
    fields = {"item_id": outcome.item_id, "stage": stage}
    match outcome:
        case Halt(reason=reason):
            log.critical("item.critical", error=reason, **fields)
        case Retry(reason=reason, strategy=strategy, delay=delay):
            log.info("item.retry", strategy=strategy, delay=delay, error=reason, **fields)
        case Rewrite(reason=reason):
            log.info("item.rewrite", reason=reason, **fields)
        case Failed(reason=reason, category=category, strategy=strategy):
            log.warning("item.failed", category=category, strategy=strategy, error=reason, **fields)


def _ledger_row(stage: Stage, outcome: ItemOutcome, attempt: int) -> Outcome | None:
    """The state change and stored output an outcome records (None: nothing recorded)."""
    match outcome:
        case Done():
            return Outcome(
                outcome.item_id,
                stage.success_state,
                True,
                outcome.output,
                attempt,
                outcome.duration_ms,
                receipt=outcome.receipt,
                span=outcome.span,
            )
        case Failed():
            return Outcome(
                outcome.item_id,
                ItemState.FAILED,
                False,
                outcome.output(),
                attempt,
                outcome.duration_ms,
                error_class=outcome.error_class,
                error_message=outcome.reason[:2000],
                span=outcome.span,
            )
        case Rewrite():
            back_to = stage_named(stage.rewrite_stage or stage.name).work_state
            return Outcome(
                outcome.item_id,
                back_to,
                False,
                outcome.output(),
                attempt,
                outcome.duration_ms,
                span=outcome.span,
            )
    return None


def _commit(run: ChunkRun, claimed: list[ClaimedItem], outcomes: list[ItemOutcome]) -> ChunkReport:
    stage, message = run.stage, run.message
    attempts = {item.item_id: item.attempts for item in claimed}
    rows = [_ledger_row(stage, o, attempts[o.item_id]) for o in outcomes]
    recorded = [_with_fused(run, row) for row in rows if row is not None]
    with transaction() as session:
        if run.unslotted:
            log.info("chunk.deferred_for_slots", items=len(run.unslotted))
        # Not run, so not the items' fault: back to the pool with the attempt refunded.
        # Those put back while the chunk ran are no longer leased to it: left as they are.
        release_items(session, [*run.unslotted, *run.yielded], run.owner, refund_attempt=True)
        moved = record_outcomes(
            session,
            stage=stage.name,
            stage_state=stage.work_state,
            owner=run.owner,
            outcomes=recorded,
            span=(run.started, datetime.now(UTC)),
        )
        store_receipts(session, message.batch_id, [r for r in recorded if r.item_id in moved])
        summary = summarise(outcomes, moved)
        fused = summarise(list(run.fused.values()), moved)
        _defer(session, run.owner, summary)
        _halt(session, stage, message, run.owner, summary.halts)
    return ChunkReport(
        claimed=len(claimed),
        summary=summary,
        unslotted=len(run.unslotted),
        released_slots=run.used_slots,
        failed_orders=_order_ids(claimed, {*summary.failed, *fused.failed}),
        waits=chunk_fields(stage.name, outcomes, len(run.unslotted), run.waits.totals()),
        fused_stage=run.fused_stage.name if run.fused and run.fused_stage else None,
        fused=fused,
    )


def _with_fused(run: ChunkRun, row: Outcome) -> Outcome:
    """The item's row, carrying the fused stage's decision when it made one."""
    decision = run.fused.get(row.item_id)
    if decision is None or run.fused_stage is None or not row.ok:
        return row
    return fused_row(row, run.fused_stage, decision)


def _order_ids(claimed: list[ClaimedItem], ids: set[int]) -> dict[int, str]:
    return {i.item_id: str(i.document.get("order_id", "")) for i in claimed if i.item_id in ids}


def _defer(session: Session, owner: str, summary: ChunkSummary) -> None:
    """Hold retried items for the chunk's retry message; only those that paid keep the attempt."""
    hold = summary.retry_delay + get_settings().batch_lease_seconds
    for ids, refund in ((summary.refunded_retries, True), (summary.spent_retries, False)):
        defer_items(session, ids, owner=owner, hold_seconds=hold, refund_attempt=refund)
    _wait_for_circuits(session, owner, summary.deferred)


def _wait_for_circuits(session: Session, owner: str, deferred: tuple[Deferred, ...]) -> None:
    """Lease items bound for an open circuit to it until its cool-down ends, attempt refunded.

    When the lease runs out the sweeper puts them back in the pool (``return_to_pool``).
    """
    for circuit in sorted({d.circuit for d in deferred}):
        waiting = [d for d in deferred if d.circuit == circuit]
        defer_items(
            session,
            [d.item_id for d in waiting],
            owner=owner,
            hold_seconds=seconds_until(max(d.not_before for d in waiting)),
            refund_attempt=True,
            reservation=f"circuit@{circuit}"[:128],
        )
    if deferred:
        log.info("chunk.waiting_on_circuits", items=len(deferred))


def _halt(
    session: Session, stage: Stage, message: ChunkMessage, owner: str, halts: tuple[Halt, ...]
) -> None:
    if not halts:
        return
    first = halts[0]
    data = {"batch_id": message.batch_id, "item_id": first.item_id, "stage": stage.name}
    reason = f"CRITICAL in {stage.name} of item {first.item_id}: {first.reason}"
    halt(session, reason=reason, data=data)
    record_notification(
        session, message.batch_id, HALTED, {**data, "reason": reason}, emergency=True
    )
    # The item goes back untouched: after inspection, resume-all runs it again.
    release_items(session, [h.item_id for h in halts], owner)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
