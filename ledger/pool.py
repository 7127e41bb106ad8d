"""The work pool: items waiting for the feeder, in the order they should run.

An item is in the pool while it is open, unleased and has no message published
for it (``queued_at IS NULL``). The feeder takes the best candidates of a lane
with short index walks per running batch (``ix_items_pool_io`` for the I/O-bound
stages' states, ``ix_items_pool_cpu`` for the others), marks them queued and
publishes their chunks; a claim or a recorded outcome clears the mark, so whatever
an item waits for next puts it back in the pool. The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.orm import Session

from pipeline import priority
from pipeline.catalog import CustomerTier
from pipeline.chunk import DEFAULT_MAX_RETRIES
from pipeline.stage_registry import IO_BOUND_STATES, pooled_kind_sql, queued_io_sql
from pipeline.states import OPEN_ITEM_STATES, open_sql, pooled_sql


@dataclass(frozen=True)
class Candidate:
    """A pooled item and what the feeder needs to chunk it and take its slots."""

    item_id: int
    batch_id: str
    state: str
    customer_id: str
    publisher_domain: str
    max_retries: int


_CANDIDATE_COLUMNS = f"""
    i.id, i.batch_id, i.state, i.customer_id, i.publisher_domain,
    coalesce((b.options->>'max_retries')::int, {DEFAULT_MAX_RETRIES}),
    i.score, i.fair_rank
"""
_CANDIDATE_WHERE = f"""
    i.lane = :lane AND {pooled_sql("i.")}
    AND b.status = 'RUNNING'
    AND NOT EXISTS (SELECT 1 FROM controls WHERE name = 'halt')
"""


def _kind_walk(io_bound: bool) -> str:
    """One running batch's best pooled items of one kind: an ordered walk that stops."""
    limit = ":io_limit" if io_bound else ":cpu_limit"
    return f"""(SELECT i.id, i.batch_id, i.state, i.customer_id, i.publisher_domain,
                   i.score, i.fair_rank, {str(io_bound).lower()} AS io
            FROM items i
            WHERE i.batch_id = b.id AND i.lane = :lane AND {pooled_kind_sql(io_bound, "i.")}
            ORDER BY i.score DESC, i.fair_rank, i.id
            LIMIT {limit})"""


# Each running batch's best of each kind, from ``ix_items_pool_io`` and
# ``ix_items_pool_cpu`` (one ordered walk each, that stops at that kind's bound),
# merged. One scan of the whole lane cannot skip a paused batch's pooled backlog,
# so the planner read every open item of the running batches instead, a cost that
# grew with the batch (bench/NOTES.md, "The feeder's pool query"). One walk over
# both kinds read through a deep backlog of one kind up to the whole limit to find
# the other's (session 9). Of the merged rows, at most :io_limit of I/O-bound
# stages' states and :cpu_limit of the others come back: the feeder can only chunk
# what each queue has room for (session 8).
_CANDIDATES = text(
    f"""
    SELECT c.id, c.batch_id, c.state, c.customer_id, c.publisher_domain, c.retries,
           c.score, c.fair_rank
    FROM (
        SELECT i.id, i.batch_id, i.state, i.customer_id, i.publisher_domain,
               coalesce((b.options->>'max_retries')::int, {DEFAULT_MAX_RETRIES}) AS retries,
               i.score, i.fair_rank, i.io,
               row_number() OVER (PARTITION BY i.io
                                  ORDER BY i.score DESC, i.fair_rank, i.id) AS n
        FROM batches b
        CROSS JOIN LATERAL ({_kind_walk(True)} UNION ALL {_kind_walk(False)}) i
        WHERE b.status = 'RUNNING'
          AND NOT EXISTS (SELECT 1 FROM controls WHERE name = 'halt')
    ) c
    WHERE c.n <= CASE WHEN c.io THEN :io_limit ELSE :cpu_limit END
    ORDER BY c.score DESC, c.fair_rank, c.id
    LIMIT :limit
    """
)


def _pooled_exists(io_bound: bool) -> str:
    # Matches one partial index's predicate exactly, so each probe is an index look-up.
    return f"""EXISTS (SELECT 1 FROM items i
                   WHERE i.batch_id = b.id AND i.lane = :lane
                     AND {pooled_kind_sql(io_bound, "i.")})"""


_ANY_POOLED = text(
    f"""
    SELECT EXISTS (
        SELECT 1 FROM batches b
        WHERE b.status = 'RUNNING' AND ({_pooled_exists(True)} OR {_pooled_exists(False)})
    )
    """
)


def any_pooled(session: Session, lane: str) -> bool:
    """Whether any running batch has an item of ``lane`` waiting in the pool.

    One index probe per running batch, so the feeder can skip an empty lane
    without its lock. Items in held (scheduled) states count too: this only
    decides whether the feeder looks, and its own query leaves those out.
    """
    return bool(session.scalar(_ANY_POOLED, {"lane": lane}))


#: The open states whose stage is I/O-bound (its chunks go to the lane's I/O queue).
IO_STATES: Final = tuple(sorted(s.value for s in IO_BOUND_STATES))


def _per_state_candidates(states: Sequence[str]) -> str:
    """The scan for some states only: each state's best from ``ix_items_pool_state``, merged.

    Each state's walk stops at its kind's bound (``:io_limit`` or ``:cpu_limit``).

    One scan of the lane's pool that filters held states out would walk past the
    whole held backlog on every feed (``bench/schedule_hold.py``).
    """
    parts = [
        f"""(SELECT {_CANDIDATE_COLUMNS}
             FROM items i JOIN batches b ON b.id = i.batch_id
             WHERE {_CANDIDATE_WHERE} AND i.state = :state_{n}
             ORDER BY i.score DESC, i.fair_rank, i.id
             LIMIT {":io_limit" if state in IO_STATES else ":cpu_limit"})"""
        for n, state in enumerate(states)
    ]
    union = " UNION ALL ".join(parts)
    return f"SELECT * FROM ({union}) c ORDER BY 7 DESC, 8, 1"


_SORT_OFF = text("SET LOCAL enable_sort = off")
_SORT_DEFAULT = text("SET LOCAL enable_sort TO DEFAULT")


def candidates(
    session: Session,
    lane: str,
    limit: int,
    held: Sequence[str] = (),
    *,
    per_kind: Mapping[bool, int] | None = None,
) -> list[Candidate]:
    """The lane's pooled items of running batches, best first (none while halted).

    Items in ``held`` states stay in the pool: their scheduled stage's window is
    shut (``ledger.windows.held_states``). ``per_kind`` bounds how many of the
    ``limit`` may wait for an I/O-bound stage (key True) and for another (False):
    the best of each kind, so a deep backlog of one kind cannot crowd the other out
    of the answer nor fill it with rows no queue has room for; each kind's index
    walk stops at its bound. Of those, the best ``limit`` come back.
    """
    kinds = {io: min(limit, (per_kind or {}).get(io, limit)) for io in (False, True)}
    params: dict[str, object] = {
        "lane": lane,
        "limit": limit,
        "io_limit": kinds[True],
        "cpu_limit": kinds[False],
    }
    rows: Sequence[Sequence[Any]]
    if not held:
        # Without this the planner, estimating almost no pooled rows for a batch its
        # statistics do not know yet (any new batch in a ledger with a long history:
        # autoanalyze waits for a tenth of the table to change), reads every open item
        # of the batch from ix_items_open and sorts them. The ordered walks of
        # ix_items_pool_io/_cpu are the only plan without a sort there, and they stop.
        session.execute(_SORT_OFF)
        rows = session.execute(_CANDIDATES, params).all()
        session.execute(_SORT_DEFAULT)
    else:
        states = sorted(s.value for s in OPEN_ITEM_STATES if s.value not in set(held))
        if not states:
            return []
        params.update({f"state_{n}": state for n, state in enumerate(states)})
        ranked = session.execute(text(_per_state_candidates(states)), params)
        rows = _per_kind(ranked, kinds)[:limit]
    return [
        Candidate(int(i), str(b), str(state), str(customer), str(domain), int(retries))
        for i, b, state, customer, domain, retries, _, _ in rows
    ]


def _per_kind(rows: Iterable[Sequence[Any]], kinds: Mapping[bool, int]) -> list[Sequence[Any]]:
    """The first ``kinds[io]`` of ``rows`` (ranked) of each kind, in their order."""
    taken = {False: 0, True: 0}
    kept: list[Sequence[Any]] = []
    for row in rows:
        io = row[2] in IO_STATES
        if taken[io] < kinds[io]:
            taken[io] += 1
            kept.append(row)
    return kept


_MARK_QUEUED = text(
    f"""
    UPDATE items SET queued_at = now()
    WHERE id = ANY(:ids) AND {pooled_sql()}
    RETURNING id
    """
)


def mark_queued(session: Session, item_ids: Sequence[int]) -> set[int]:
    """Take items out of the pool before their message is published; return those taken."""
    if not item_ids:
        return set()
    return {int(i) for i in session.scalars(_MARK_QUEUED, {"ids": list(item_ids)})}


@dataclass(frozen=True)
class QueuedWork:
    """Items of one state, customer and publisher whose message is out, not yet claimed."""

    state: str
    customer_id: str
    publisher_domain: str
    count: int


# Matches ix_items_queued_io's predicate exactly, so only its few rows are read.
_QUEUED_IO = text(
    f"""
    SELECT state, customer_id, publisher_domain, count(*) FROM items
    WHERE {queued_io_sql()} AND lane = ANY(:lanes)
      AND queued_at > now() - make_interval(secs => :within)
    GROUP BY state, customer_id, publisher_domain
    """
)


def queued_io(session: Session, lanes: Sequence[str], within_seconds: float) -> list[QueuedWork]:
    """Writing and delivery work of ``lanes`` on its way to the slots: queued, unclaimed.

    Only items queued in the last ``within_seconds``: an older one may have lost its
    message (the sweeper puts those back after its grace), and counting it would
    keep a slot promised to nothing.
    """
    rows = session.execute(_QUEUED_IO, {"lanes": list(lanes), "within": within_seconds})
    return [QueuedWork(str(s), str(c), str(d), int(n)) for s, c, d, n in rows]


_UNQUEUE = text(
    """
    UPDATE items SET queued_at = NULL
    WHERE id = ANY(:ids) AND queued_at IS NOT NULL AND lease_owner IS NULL
      AND state = ANY(:states)
    """
)


def unqueue(session: Session, item_ids: Sequence[int], states: Sequence[str]) -> None:
    """Put items whose message was spent without a claim back in the pool.

    Only items still waiting in ``states`` (those the message's stage picks up):
    an item that already moved on may have a newer message on its way.
    """
    if item_ids:
        session.execute(_UNQUEUE, {"ids": list(item_ids), "states": list(states)})


_RETURN_TO_POOL = text(
    f"""
    WITH lost AS (
        -- Skipping rows another session holds locked: recovery never waits on a
        -- stranger's locks (a frozen worker's); a later sweep takes them back.
        SELECT i.id FROM items i JOIN batches b ON b.id = i.batch_id
        WHERE b.status = 'RUNNING' AND {open_sql("i.state")}
          AND (:batch_id = '' OR i.batch_id = :batch_id)
          AND (
                (i.lease_expires_at IS NOT NULL AND i.lease_expires_at < now())
             OR (i.lease_owner IS NULL AND i.queued_at IS NOT NULL
                 AND ((i.lane = ANY(:idle_lanes)
                       AND i.queued_at < now() - make_interval(secs => :grace))
                      OR i.queued_at < now() - make_interval(secs => :stale)))
          )
        ORDER BY i.id
        FOR UPDATE OF i SKIP LOCKED
    )
    UPDATE items AS i SET lease_owner = NULL, lease_expires_at = NULL, queued_at = NULL
    FROM lost WHERE i.id = lost.id
    RETURNING i.lane
    """
)


def return_to_pool(
    session: Session,
    *,
    idle_lanes: Sequence[str],
    grace_seconds: float,
    stale_seconds: float,
    batch_id: str = "",
) -> dict[str, int]:
    """Pool every item of a running batch that no message or worker will pick up.

    That is every item whose lease ran out (its worker died or its retry message
    was lost), every queued item of a lane whose queue is empty for longer than
    ``grace_seconds`` (its message is gone, e.g. Redis restarted empty), and any
    queued item older than ``stale_seconds``. Returns how many per lane.
    """
    params = {
        "batch_id": batch_id,
        "idle_lanes": list(idle_lanes),
        "grace": grace_seconds,
        "stale": stale_seconds,
    }
    counts: dict[str, int] = {}
    for (lane,) in session.execute(_RETURN_TO_POOL, params):
        counts[str(lane)] = counts.get(str(lane), 0) + 1
    return counts


# An item deferred by a chunk waits leased to its task's retry (``<task id>@retry``,
# ledger.items.defer_items) for the retry delay plus one lease, so its retry is due
# once less than one lease is left.
_POOL_DUE_RETRIES = text(
    f"""
    WITH due AS (
        SELECT i.id FROM items i JOIN batches b ON b.id = i.batch_id
        WHERE b.status = 'RUNNING' AND {open_sql("i.state")}
          AND (:batch_id = '' OR i.batch_id = :batch_id)
          AND i.lease_owner LIKE '%@retry'
          AND i.lease_expires_at <= now() + make_interval(secs => :lease)
        ORDER BY i.id
        FOR UPDATE OF i SKIP LOCKED
    )
    UPDATE items AS i SET lease_owner = NULL, lease_expires_at = NULL, queued_at = NULL,
           updated_at = now()
    FROM due WHERE i.id = due.id AND i.lease_owner LIKE '%@retry'
    RETURNING i.lane
    """
)


def pool_due_retries(session: Session, *, lease_seconds: float, batch_id: str = "") -> int:
    """Pool items of running batches still reserved for a retry that is already due.

    A retry message that arrives while the system is halted (or the batch paused)
    claims nothing and is spent, so its items would stay reserved until the lease
    runs out (the retry delay plus ``lease_seconds``, about 11 minutes). Resuming
    calls this to send them at once. A retry message still on its way afterwards
    changes nothing: a claim is a conditional update, so whichever message comes
    first runs the item once and the other finds it taken or moved on. Returns how
    many items were pooled.
    """
    rows = session.execute(_POOL_DUE_RETRIES, {"batch_id": batch_id, "lease": lease_seconds})
    return len(rows.all())


_REFRESH_SCORES = text(
    f"""
    UPDATE items AS i SET score = s.score
    FROM (
        SELECT i2.id, GREATEST(1, :base
            + CASE c.tier WHEN 'premium' THEN :premium WHEN 'standard' THEN :standard ELSE 0 END
            + CASE
                WHEN i2.deadline IS NULL THEN 0
                WHEN i2.deadline - now() < interval '24 hours' THEN :urgent
                WHEN i2.deadline - now() < interval '72 hours'
                    THEN :soon
                ELSE 0 END
            + floor(GREATEST(extract(epoch FROM now() - i2.created_at), 0) / 3600.0
                    * :per_hour)::int) AS score
        FROM items i2 LEFT JOIN customers c ON c.customer_id = i2.customer_id
        WHERE {open_sql("i2.state")}
    ) s
    WHERE i.id = s.id AND i.score <> s.score
    """
)


def refresh_scores(session: Session) -> int:
    """Recompute every open item's score as time passes; return how many changed.

    The same formula as :func:`pipeline.priority.calculate_priority`, in SQL, so
    the feeder's index stays in priority order without loading every item
    (``tests/integration/test_work_pool.py`` checks both agree).
    """
    params = {
        "base": priority.BASE,
        "premium": priority.TIER_BONUS[CustomerTier.PREMIUM],
        "standard": priority.TIER_BONUS[CustomerTier.STANDARD],
        "urgent": priority.URGENT_BONUS,
        "soon": priority.SOON_BONUS,
        "per_hour": priority.POINTS_PER_HOUR_WAITING,
    }
    return int(session.execute(_REFRESH_SCORES, params).rowcount or 0)  # type: ignore[attr-defined]


_POOLED = text(
    f"""
    SELECT count(*) FROM items i JOIN batches b ON b.id = i.batch_id
    WHERE b.status = 'RUNNING' AND (:batch_id = '' OR i.batch_id = :batch_id)
      AND {pooled_sql("i.")}
    """
)


def pooled_count(session: Session, batch_id: str = "") -> int:
    """How many items of running batches (or of one batch) wait in the pool."""
    return int(session.scalar(_POOLED, {"batch_id": batch_id}) or 0)


_ACTIVE_STATES = text(
    """
    SELECT id, state FROM items
    WHERE id = ANY(:ids)
      AND ((lease_owner IS NOT NULL AND lease_expires_at > now()) OR queued_at IS NOT NULL)
    """
)


def active_states(session: Session, item_ids: Sequence[int]) -> dict[int, str]:
    """State of each of ``item_ids`` that is queued or held by a live lease right now.

    The sweeper drops every concurrency slot whose holder is not among them.
    """
    if not item_ids:
        return {}
    rows = session.execute(_ACTIVE_STATES, {"ids": list(item_ids)})
    return {int(item_id): str(state) for item_id, state in rows}


_CIRCUIT_WAITS = text(
    """
    SELECT substr(lease_owner, length('circuit@') + 1), max(lease_expires_at), count(*)
    FROM items
    WHERE batch_id = :batch_id AND lease_owner LIKE 'circuit@%' AND lease_expires_at > now()
    GROUP BY 1 ORDER BY 1
    """
)


def circuit_waits(session: Session, batch_id: str) -> list[dict[str, object]]:
    """The batch's orders waiting out an open circuit: ``circuit``, ``open_until``, ``orders``.

    Such an order is leased to ``circuit@<circuit>`` until the cool-down ends
    (``tasks.circuits``); this is why a batch with open work may not be moving.
    """
    rows = session.execute(_CIRCUIT_WAITS, {"batch_id": batch_id})
    return [
        {"circuit": str(circuit), "open_until": until.isoformat(), "orders": int(count)}
        for circuit, until, count in rows
    ]
