"""Repository functions for items: claim a chunk, load stage inputs, record outcomes.

Every state change is conditional on the state (and lease owner) the caller
expects, so a redelivered or duplicated chunk changes nothing the second time.
One statement per chunk, never one per item. The caller owns the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from ledger.models import DeliveryReceipt
from pipeline.similarity import DEFAULT_NUM_PERM, PACKED_DTYPE, SignatureSet
from pipeline.states import IllegalTransition, ItemState, is_legal

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ClaimedItem:
    """An item this worker now holds a lease on."""

    item_id: int
    document: dict[str, Any]
    attempts: int
    customer_id: str = ""
    publisher_domain: str = ""
    #: ``(score, fair_rank)``, the feeder's order: its place among items waiting for slots
    rank: tuple[float, int] = (0.0, 0)


@dataclass(frozen=True)
class FusedOutput:
    """The output of the next stage, run in the same task (``pipeline.fusing``).

    Stored beside the chunk's own output, under its own stage, in the same statement.
    """

    stage: str
    ok: bool
    output: dict[str, Any]
    duration_ms: float = 0.0
    #: when its own run started and ended (QC's span, not the writer's)
    span: tuple[datetime, datetime] | None = None


@dataclass(frozen=True)
class Outcome:
    """What one stage did to one item; ``new_state`` is where the item goes next."""

    item_id: int
    new_state: str
    ok: bool
    output: dict[str, Any]
    attempt: int
    duration_ms: float = 0.0
    error_class: str | None = None
    error_message: str | None = None
    receipt: dict[str, Any] | None = field(default=None)
    #: when this item's own run started and ended (its concurrency slots held);
    #: None: the chunk's span passed to record_outcomes
    span: tuple[datetime, datetime] | None = None
    #: the next stage's output when it ran fused; ``new_state`` is then its decision
    fused: FusedOutput | None = None


# The order's document is looked up per claimed row (``order_documents``, migration
# 0019) by a scalar subquery, which PostgreSQL runs as one primary-key probe per row:
# as a join the planner hashed the whole table once the statistics said it was
# small (a ledger of 11,000 orders: a sequential scan of it in every claim, C at
# 10,000 about 20 % slower). An item without a document (no path of the ledger
# makes one) still comes back, with an empty one: it fails its stage's validation
# visibly instead of staying leased unseen.
_CLAIM = text(
    """
    WITH claimed AS (
    UPDATE items SET state = :stage_state, lease_owner = :owner,
           lease_expires_at = now() + make_interval(secs => :lease),
           attempts = attempts + 1, queued_at = NULL, updated_at = now()
    WHERE batch_id = :batch_id AND id = ANY(:ids) AND state = ANY(:entry_states)
      AND (lease_expires_at IS NULL OR lease_expires_at < now()
           OR (:reclaim AND split_part(lease_owner, '@', 1) = :task_id))
      AND EXISTS (SELECT 1 FROM batches b WHERE b.id = :batch_id AND b.status = 'RUNNING')
      AND NOT EXISTS (SELECT 1 FROM controls WHERE name = 'halt')
    RETURNING id, attempts, customer_id, publisher_domain, score, fair_rank
    )
    SELECT c.id,
           coalesce((SELECT d.document FROM order_documents d WHERE d.item_id = c.id), '{}'),
           c.attempts, c.customer_id, c.publisher_domain, c.score, c.fair_rank
    FROM claimed c
    """
)


def claim_items(
    session: Session,
    *,
    batch_id: str,
    item_ids: Sequence[int],
    entry_states: Sequence[str],
    stage_state: str,
    owner: str,
    lease_seconds: int,
    reclaim: bool = False,
) -> list[ClaimedItem]:
    """Lease the chunk's items that are waiting for this stage and not held by anyone.

    Items already past the stage, leased to a live worker, in a batch that is not
    RUNNING (paused, cancelled, finished), or anything while the system is halted
    are skipped. ``owner`` is ``<task id>@<where>``. With ``reclaim`` (the message is
    a Celery retry or a broker redelivery, so its earlier run is over) leases held
    under the same task id are taken back at once; a plain duplicate of a message
    has the same task id but no such flag, and must not take over its original's
    items while that still runs.
    """
    rows = session.execute(
        _CLAIM,
        {
            "stage_state": stage_state,
            "owner": owner,
            "lease": lease_seconds,
            "batch_id": batch_id,
            "ids": list(item_ids),
            "entry_states": list(entry_states),
            "task_id": owner.partition("@")[0],
            "reclaim": reclaim,
        },
    )
    claimed = [
        ClaimedItem(
            int(i), dict(doc), int(att), str(customer), str(domain), (float(score), int(rank))
        )
        for i, doc, att, customer, domain, score, rank in rows
    ]
    return sorted(claimed, key=lambda item: item.item_id)


_LATEST_OUTPUTS = text(
    """
    WITH chunk AS (SELECT id, origin_item_id FROM items WHERE id = ANY(:ids)),
    -- The item's lineage: itself, and for a recovery item its root and the root's
    -- other recoveries, so a recovered order reads the outputs its earlier batches
    -- stored instead of producing them again. Three index look-ups joined by UNION
    -- ALL: an OR in one join condition cannot use an index and scanned all items.
    lineage AS (
        SELECT c.id AS item_id, c.id AS source_id FROM chunk c
        UNION ALL
        SELECT c.id, c.origin_item_id FROM chunk c WHERE c.origin_item_id IS NOT NULL
        UNION ALL
        SELECT c.id, l.id FROM chunk c
        JOIN items l ON l.origin_item_id = c.origin_item_id AND l.id <> c.id
            AND l.origin_item_id IS NOT NULL  -- the partial ix_items_origin_item_id
        WHERE c.origin_item_id IS NOT NULL
    )
    SELECT DISTINCT ON (lineage.item_id) lineage.item_id, o.output
    FROM lineage
    JOIN stage_outputs o ON o.item_id = lineage.source_id AND o.stage = :stage AND o.ok = :ok
    ORDER BY lineage.item_id, o.id DESC
    """
)


def latest_outputs(
    session: Session, item_ids: Sequence[int], stage: str, *, ok: bool = True
) -> dict[int, Any]:
    """Return each item's newest successful (or, with ``ok=False``, failed) output of ``stage``.

    Read across the item's recovery lineage: a recovery item resumes from the
    outputs its lineage already has (outputs are never copied to it).
    """
    rows = session.execute(_LATEST_OUTPUTS, {"ids": list(item_ids), "stage": stage, "ok": ok})
    return {int(item_id): output for item_id, output in rows}


_OUTPUT_COUNTS = text(
    """
    SELECT item_id, count(*) FROM stage_outputs
    WHERE item_id = ANY(:ids) AND stage = :stage AND ok = :ok GROUP BY item_id
    """
)


def output_counts(
    session: Session, item_ids: Sequence[int], stage: str, *, ok: bool
) -> dict[int, int]:
    """How many outputs of ``stage`` (successful or failed) each item has."""
    rows = session.execute(_OUTPUT_COUNTS, {"ids": list(item_ids), "stage": stage, "ok": ok})
    return {int(item_id): int(count) for item_id, count in rows}


_SIGNATURES = text(
    """
    SELECT d.domain, recent.signatures
    FROM unnest(CAST(:domains AS text[])) AS d(domain)
    CROSS JOIN LATERAL (
        -- An index-only walk (ix_stage_outputs_article_signatures carries the packed
        -- signature) that stops after :per_domain entries, so its cost does not grow
        -- with the publisher's history; one bytea per publisher, newest first, that
        -- the worker reinterprets as a matrix without decoding a value. Signatures of
        -- another length count towards the limit but are left out, as before 0015.
        SELECT string_agg(newest.signature, ''::bytea ORDER BY newest.id DESC)
                   FILTER (WHERE octet_length(newest.signature) = :width) AS signatures
        FROM (
            SELECT o.id, o.signature FROM stage_outputs o
            WHERE o.publisher_domain = d.domain AND o.signature IS NOT NULL
              AND NOT (o.item_id = ANY(:ids))
            ORDER BY o.id DESC
            LIMIT :per_domain
        ) newest
    ) recent
    WHERE recent.signatures IS NOT NULL
    """
)


def article_signatures(
    session: Session,
    domains: Sequence[str],
    *,
    exclude: Sequence[int],
    per_domain: int,
    num_perm: int = DEFAULT_NUM_PERM,
) -> dict[str, SignatureSet]:
    """MinHash signatures of each publisher's most recent approved articles, newest first.

    Read from ``stage_outputs.signature`` (packed, migration 0015), never from the
    QC reports. Publishers without any are left out.

    Args:
        session: The caller's session.
        domains: The publishers to look up.
        exclude: Item ids whose own outputs are not "earlier" (the chunk's items).
        per_domain: How many of each publisher's newest approved articles to read.
        num_perm: The length of the signatures to compare with; others are skipped.
    """
    params = {
        "domains": list(domains),
        "ids": list(exclude),
        "per_domain": per_domain,
        "width": num_perm * PACKED_DTYPE.itemsize,
    }
    return {
        str(domain): SignatureSet.from_packed(bytes(packed), num_perm)
        for domain, packed in session.execute(_SIGNATURES, params)
    }


_RECORD = text(
    """
    WITH v AS (
        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb))
        AS v(item_id bigint, new_state text, error_class text, error_message text,
             ok boolean, output jsonb, duration_ms float8, started_at timestamptz,
             finished_at timestamptz, fused_stage text, fused_ok boolean, fused_output jsonb,
             fused_duration_ms float8, fused_started_at timestamptz,
             fused_finished_at timestamptz)
    ), moved AS (
        -- A fused rewrite (WRITING -> WRITING) is a new run of writing: its budget restarts.
        UPDATE items AS i SET state = v.new_state, error_class = v.error_class,
               error_message = v.error_message, lease_owner = NULL, lease_expires_at = NULL,
               queued_at = NULL,
               attempts = CASE WHEN v.new_state = i.state AND v.fused_stage IS NULL
                               THEN i.attempts ELSE 0 END,
               updated_at = now()
        FROM v
        -- ``i.id = ANY(:ids)`` repeats the join's keys where the planner can see them:
        -- it estimates a set-returning function at 100 rows, and with only the join a
        -- small or narrow ``items`` (a few thousand orders) was read whole, every chunk.
        WHERE i.id = ANY(:ids) AND i.id = v.item_id
          AND i.state = :stage_state AND i.lease_owner = :owner
        RETURNING i.id, i.publisher_domain
    ), outputs AS (
        SELECT v.item_id, CAST(:stage AS text) AS stage, v.ok, v.output, v.duration_ms,
               v.started_at, v.finished_at
        FROM v
        UNION ALL
        SELECT v.item_id, v.fused_stage, v.fused_ok, v.fused_output, v.fused_duration_ms,
               v.fused_started_at, v.fused_finished_at
        FROM v WHERE v.fused_stage IS NOT NULL
    ), stored AS (
        -- ``attempt`` numbers an item's outputs of one stage across its whole life (a
        -- rewrite runs writing and QC again), so every run's output is kept.
        INSERT INTO stage_outputs (item_id, stage, attempt, ok, output, duration_ms,
                                   started_at, finished_at, publisher_domain)
        SELECT s.item_id, s.stage,
               coalesce((SELECT max(o.attempt) FROM stage_outputs o
                         WHERE o.item_id = s.item_id AND o.stage = s.stage), 0) + 1,
               s.ok, s.output, s.duration_ms,
               coalesce(s.started_at, CAST(:started_at AS timestamptz)),
               coalesce(s.finished_at, CAST(:finished_at AS timestamptz)),
               moved.publisher_domain
        FROM outputs s JOIN moved ON moved.id = s.item_id
    )
    SELECT id FROM moved
    """
)


def record_outcomes(
    session: Session,
    *,
    stage: str,
    stage_state: str,
    owner: str,
    outcomes: Sequence[Outcome],
    span: tuple[datetime, datetime] | None = None,
) -> set[int]:
    """Apply a chunk's outcomes with their outputs in one statement; return the ids that moved.

    An item whose lease this worker no longer holds (it expired and someone else
    claimed it) is left alone, and its output is not stored. ``span`` is when the
    chunk started and finished holding its items (stored with each output). An
    outcome with a ``fused`` output stores that too, under its own stage.
    """
    if not outcomes:
        return set()
    _check_transitions(stage_state, outcomes)
    payload = [_record_row(o) for o in outcomes]
    params = {
        "rows": json.dumps(payload),
        "ids": [o.item_id for o in outcomes],
        "stage_state": stage_state,
        "owner": owner,
        "stage": stage,
        "started_at": span[0] if span else None,
        "finished_at": span[1] if span else None,
    }
    return {int(item_id) for item_id in session.scalars(_RECORD, params)}


def _record_row(outcome: Outcome) -> dict[str, Any]:
    fused = outcome.fused
    return {
        "item_id": outcome.item_id,
        "new_state": outcome.new_state,
        "error_class": outcome.error_class,
        "error_message": outcome.error_message,
        "ok": outcome.ok,
        "output": outcome.output,
        "duration_ms": outcome.duration_ms,
        "started_at": _iso(outcome.span, 0),
        "finished_at": _iso(outcome.span, 1),
        "fused_stage": fused.stage if fused else None,
        "fused_ok": fused.ok if fused else None,
        "fused_output": fused.output if fused else None,
        "fused_duration_ms": fused.duration_ms if fused else None,
        "fused_started_at": _iso(fused.span, 0) if fused else None,
        "fused_finished_at": _iso(fused.span, 1) if fused else None,
    }


def _iso(span: tuple[datetime, datetime] | None, end: int) -> str | None:
    return span[end].isoformat() if span else None


def _check_transitions(stage_state: str, outcomes: Sequence[Outcome]) -> None:
    for outcome in outcomes:
        current, target = ItemState(stage_state), ItemState(outcome.new_state)
        if not is_legal(current, target):
            log.error(
                "item.illegal_transition", item_id=outcome.item_id, current=current, target=target
            )
            raise IllegalTransition(
                f"item {outcome.item_id}: illegal transition {current} -> {target}"
            )


def store_receipts(session: Session, batch_id: str, outcomes: Sequence[Outcome]) -> None:
    """Store the delivery receipts of delivered items (at most one per item)."""
    rows = [
        {
            "item_id": o.item_id,
            "batch_id": batch_id,
            "idempotency_key": o.receipt["idempotency_key"],
            "published_url": o.receipt["published_url"],
            "receipt": o.receipt,
        }
        for o in outcomes
        if o.receipt is not None
    ]
    if rows:
        session.execute(pg_insert(DeliveryReceipt).on_conflict_do_nothing(), rows)


_DEFER = text(
    """
    UPDATE items SET lease_owner = :reservation,
           lease_expires_at = now() + make_interval(secs => :hold),
           attempts = attempts - :refund, updated_at = now()
    WHERE id = ANY(:ids) AND lease_owner = :owner
    """
)


def defer_items(
    session: Session,
    item_ids: Sequence[int],
    *,
    owner: str,
    hold_seconds: float,
    refund_attempt: bool,
    reservation: str | None = None,
) -> None:
    """Keep items leased to this task's retry until ``hold_seconds`` from now.

    The lease stops the sweeper from re-dispatching an item that is only waiting
    out its backoff; the retry message (same task id) takes it back. If that
    message is lost, the lease expires and the sweeper takes over. A rate-limit
    deferral refunds the attempt so it does not spend the retry budget.
    ``reservation`` names another holder instead (e.g. ``circuit@writer`` for an
    item waiting out an open circuit: no message may take it back early).
    """
    if item_ids:
        session.execute(
            _DEFER,
            {
                "ids": list(item_ids),
                "owner": owner,
                "reservation": reservation or f"{owner.partition('@')[0]}@retry",
                "hold": hold_seconds,
                "refund": 1 if refund_attempt else 0,
            },
        )


_RELEASE = text(
    """
    UPDATE items SET lease_owner = NULL, lease_expires_at = NULL, queued_at = NULL,
           attempts = attempts - :refund, updated_at = now()
    WHERE id = ANY(:ids) AND lease_owner = :owner
    """
)


def release_items(
    session: Session, item_ids: Sequence[int], owner: str, *, refund_attempt: bool = False
) -> None:
    """Give back leases: the items return to the pool, where the feeder picks them up.

    ``refund_attempt`` undoes the claim's attempt (the item never ran, e.g. it got
    no concurrency slot).
    """
    if item_ids:
        session.execute(
            _RELEASE, {"ids": list(item_ids), "owner": owner, "refund": int(refund_attempt)}
        )
