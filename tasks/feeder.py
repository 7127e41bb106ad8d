"""The feeder: keeps each lane's queue topped up from the ledger's pool, best work first.

Why not publish a whole batch at once: a 100,000-order batch would put tens of
thousands of messages in Redis, in submission order, where nothing can overtake
them. Instead each lane holds at most ``BATCH_LANE_WINDOW`` messages. Whenever a
chunk finishes (and on submit, resume and every sweep) the feeder publishes the
next chunks of the lane in ``calculate_priority`` order (ties to the smaller
customer first), sending only what fits in the free concurrency slots: work that does
not fit stays in the pool and is fed when a slot comes free, so nothing polls.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

import redis
import structlog
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock
from sqlalchemy.orm import Session

from celery_app import IO_LANES, LANES
from ledger.db import transaction
from ledger.pool import Candidate, any_pooled, candidates, mark_queued, queued_io
from ledger.windows import held_states
from metrics.keys import feeder_again_key, feeder_lock_key, queue_key
from metrics.redis_client import redis_client
from pipeline.chunk import ChunkMessage
from pipeline.chunking import plan_chunks
from pipeline.lanes import PRIORITIES
from pipeline.settings import get_settings
from pipeline.stage_registry import STAGE_NAMES, stage_for_state, stage_named
from tasks.coalesce import Coalesced
from tasks.dispatch import publish_chunks
from tasks.slots import SlotUser, admissible, is_capped, promised

log = structlog.get_logger(__name__)

#: How long one feed may hold a lane's lock (it takes milliseconds).
LOCK_MS = 10_000
#: Rounds a feeder adds when others asked while it held the lock.
EXTRA_ROUNDS = 3


def feed(lane: str, *, pooled: bool = False) -> int:
    """Top up ``lane``'s queue to ``BATCH_LANE_WINDOW`` messages; return how many were sent.

    Cheap when there is nothing to do (its queues' ``LLEN`` and, with room, one probe
    of the pool); when another process is feeding the lane right now this returns 0
    at once. ``pooled``: the caller has just committed items of the lane to the pool
    (a submission), so the probe could only answer yes and is skipped.
    """
    client = redis_client()
    window = get_settings().batch_lane_window
    rooms = _rooms(client, lane)
    # Wait until a quarter of a window is free: one feed then fills several
    # chunks, so they come out full instead of one thin chunk per finished task.
    if max(rooms.values()) < max(1, window // 4):
        return 0
    # An empty lane is left without taking its lock. Threads of the I/O worker feed
    # every lane after their chunks, mostly finding nothing, and each held the lock
    # for the length of its pool query while it waited for its interpreter's lock
    # between steps (148 ms on average, up to 1.2 s behind a CPU-bound backlog):
    # a high batch's own feed at submission met that lock and left its first
    # chunks to the slow holder. Whoever pools an item feeds after its commit, so
    # an empty answer read before that commit loses nothing.
    if not pooled and not _has_pooled(lane):
        return 0
    # redis-py's Lock releases and renews only while the key still holds its own
    # token (one Lua call): a feed that outlived its lock never ends a successor's.
    # One Lock object per call, never shared between threads: no thread-local token.
    lock = client.lock(
        feeder_lock_key(lane), timeout=LOCK_MS / 1000, blocking=False, thread_local=False
    )
    again = feeder_again_key(lane)
    if not lock.acquire():
        # Someone is feeding this lane and may have read the pool before our change:
        # ask them to look once more when they are done, instead of polling.
        client.set(again, "1", px=LOCK_MS)
        # They may have taken their last look just before that SET: try once more.
        # Free now: they are gone and we feed (reading after our change). Still held:
        # its holder looks at the flag after releasing (below), or took the lock after
        # our change and reads the pool after it.
        if not lock.acquire():
            return 0
        client.delete(again)  # ours, or a request this feed (after it) serves too
    sent = _rounds(client, lane, lock, rooms)
    # A request set between our last look and the release: one more turn. Without it
    # the flag waited for the lane's next trigger (a chunk ending, the sweep).
    if client.getdel(again) and lock.acquire():
        sent += _rounds(client, lane, lock, _rooms(client, lane))
    return sent


def _rounds(client: redis.Redis, lane: str, lock: Lock, rooms: dict[bool, int]) -> int:
    """Feed while holding ``lock``, plus a round per request made meanwhile; release it."""
    sent = 0
    try:
        sent = _feed(client, lane, rooms)
        for _ in range(EXTRA_ROUNDS):  # bounded: this process has its own work to do
            if not client.getdel(feeder_again_key(lane)):
                break
            try:
                lock.reacquire()  # a fresh LOCK_MS for this round
            except LockNotOwnedError:
                break  # it expired and another feeder holds the lane now
            sent += _feed(client, lane, _rooms(client, lane))
    finally:
        with contextlib.suppress(LockNotOwnedError):  # expired: a successor's now
            lock.release()
    return sent


def _has_pooled(lane: str) -> bool:
    with transaction() as session:
        return any_pooled(session, lane)


def _local_turn(lane: str) -> Coalesced:
    return Coalesced(lambda: feed(lane))


#: One turn per lane and process.
_LOCAL_TURNS: dict[str, Coalesced] = {lane: _local_turn(lane) for lane in PRIORITIES}


def _fresh_turns_after_fork() -> None:
    # A turn some thread held at the fork would stay taken in the child for good.
    _LOCAL_TURNS.update({lane: _local_turn(lane) for lane in PRIORITIES})


os.register_at_fork(after_in_child=_fresh_turns_after_fork)


def _rooms(client: redis.Redis, lane: str) -> dict[bool, int]:
    """Free places in the lane's queues, keyed by whether the queue is the I/O one.

    Each has its own window: a backlog of CPU-bound chunks must not keep the
    writer's chunks out of the queue the I/O worker consumes, nor the reverse.
    """
    window = get_settings().batch_lane_window
    return {
        io: window - int(client.llen(queue_key(queues[lane])))
        for io, queues in ((False, LANES), (True, IO_LANES))
    }


def feed_lanes(lanes: Sequence[str] = PRIORITIES) -> int:
    """Feed several lanes, high before normal before low (they share the global cap).

    A lane another thread of this process is feeding right now is left to it: it
    feeds once more when done (``tasks.coalesce``), so the threads of the I/O
    worker do not queue at the lane's Redis lock one behind the other.
    """
    return sum(_LOCAL_TURNS[lane]() for lane in PRIORITIES if lane in lanes)


def _feed(client: redis.Redis, lane: str, rooms: dict[bool, int]) -> int:
    room = sum(max(0, free) for free in rooms.values())
    if room <= 0:
        return 0
    settings = get_settings()
    # Each queue takes at most its free places in chunks of its stages' optimal size:
    # reading more of one kind only to drop it grew with the pool (bench/NOTES.md,
    # "C at 100,000 against 10,000 (session 8)").
    per_kind = {io: max(0, free) * _largest_chunk(io) for io, free in rooms.items()}
    with transaction() as session:
        held = held_states(session, settings.schedules(), lane)
        ranked = candidates(session, lane, sum(per_kind.values()), held, per_kind=per_kind)
        waits = any(_io_bound(c) and is_capped(_stage(c)) for c in ranked)
        on_its_way = _on_its_way(session, lane) if waits else {}
    if not ranked:
        return 0
    fits = admissible(client, [_user(c) for c in ranked], on_its_way)
    slotted = [c for c, ok in zip(ranked, fits, strict=True) if ok]
    chunks = [
        chunk
        for io, free in rooms.items()
        for chunk in plan_chunks(
            [c for c in slotted if _io_bound(c) is io],
            _group,
            lambda g: settings.chunk_optimal(g[1]),
            free,
        )
    ]
    chosen = {c.item_id for chunk in chunks for c in chunk}
    with transaction() as session:
        queued = mark_queued(session, sorted(chosen))
    kept = [[c for c in chunk if c.item_id in queued] for chunk in chunks]
    sent = publish_chunks([_message(lane, chunk) for chunk in kept if chunk])
    log.debug("feeder.fed", lane=lane, room=room, candidates=len(ranked), messages=sent)
    return sent


def _on_its_way(session: Session, lane: str) -> dict[str, int]:
    """Slots that writing and delivery work already sent in ``lane`` or above will ask for.

    Not counting them, every feed (one per call that ends) sent another
    ``BATCH_FEED_SURPLUS`` beyond the slots it saw free: worse-ranked work piled up at
    the slots, where whoever polls first wins (in the fairness benchmark the big
    customer held 7-10 of the 50 in the small ones' last 30 s). A lower lane's queued
    work does not count: the higher lane's is consumed and takes slots before it.
    """
    lanes = PRIORITIES[: PRIORITIES.index(lane) + 1]
    queued = queued_io(session, lanes, get_settings().batch_sweep_grace_seconds)
    return promised(
        (SlotUser(0, stage_for_state(q.state).name, q.customer_id, q.publisher_domain), q.count)
        for q in queued
    )


def _largest_chunk(io: bool) -> int:
    """The largest optimal chunk among the I/O-bound stages (or the others)."""
    settings = get_settings()
    chunks = [settings.chunk_optimal(s) for s in STAGE_NAMES if stage_named(s).io_bound is io]
    return max(chunks, default=0)


def _stage(candidate: Candidate) -> str:
    return stage_for_state(candidate.state).name


def _io_bound(candidate: Candidate) -> bool:
    return stage_for_state(candidate.state).io_bound


def _group(candidate: Candidate) -> tuple[str, str]:
    return candidate.batch_id, _stage(candidate)


def _user(candidate: Candidate) -> SlotUser:
    return SlotUser(
        candidate.item_id, _stage(candidate), candidate.customer_id, candidate.publisher_domain
    )


def _message(lane: str, chunk: list[Candidate]) -> ChunkMessage:
    first = chunk[0]
    return ChunkMessage(
        stage=_stage(first),
        batch_id=first.batch_id,
        item_ids=tuple(c.item_id for c in chunk),
        priority=lane,
        max_retries=first.max_retries,
    )
