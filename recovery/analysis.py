"""``analyze_batch_failures``: a batch's failures from the ledger, in five queries.

Whatever the batch's size, the ledger answers five statements, each aggregated in
PostgreSQL: the batch row; failures per reason (stage, category, class, code) and
orders and failures per publisher and per customer; failures per tenth of the run
and the longest run of neighbouring failed orders; the orders that failed more
than once over their lineage (the original item and every recovery of it); and
the first :data:`DOCUMENTS_CAP` failed orders with their last good stage. The pure
core (``pipeline.failure_analysis``) turns these into the report. Read-only: it
writes nothing, so it may run at any time, also while the batch runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.db import transaction
from pipeline.errors import UnknownBatch
from pipeline.failure_analysis import analyse
from pipeline.failure_facts import (
    TIME_BUCKETS,
    ConsecutiveRun,
    FailedDocument,
    FailureFacts,
    GroupCount,
    ProblematicItem,
    ReasonCount,
    TimeBucket,
)
from pipeline.states import ItemState

#: ``failed_documents`` lists at most this many orders (``failed_documents_total`` says all).
DOCUMENTS_CAP: Final = 1000
#: ``problematic_items`` lists at most this many orders, the most failed first.
PROBLEMATIC_CAP: Final = 1000


# An item's failure: its newest failed output that is not a QC rewrite (as
# ledger.lineage reads it). Its output holds category and code; error class and
# message are on the item.
_FAILURE = """
    LEFT JOIN LATERAL (
        SELECT o.stage, o.attempt, o.output, o.created_at FROM stage_outputs o
        WHERE o.item_id = i.id AND NOT o.ok AND NOT (o.output ? 'rewrite')
        ORDER BY o.id DESC LIMIT 1
    ) f ON true
"""

_BATCH = text("SELECT id, total_items FROM batches WHERE id = :batch_id")

_COUNTS = text(
    f"""
    WITH failed AS (
        SELECT f.stage, f.output ->> 'category' AS category, i.error_class,
               f.output ->> 'code' AS code
        FROM items i {_FAILURE}
        WHERE i.batch_id = :batch_id AND i.state = :failed
    )
    SELECT 'reason', stage, category, error_class, code, count(*), 0
    FROM failed GROUP BY stage, category, error_class, code
    UNION ALL
    SELECT 'publisher', publisher_domain, NULL, NULL, NULL,
           count(*) FILTER (WHERE state = :failed), count(*)
    FROM items WHERE batch_id = :batch_id GROUP BY publisher_domain
    UNION ALL
    SELECT 'customer', customer_id, NULL, NULL, NULL,
           count(*) FILTER (WHERE state = :failed), count(*)
    FROM items WHERE batch_id = :batch_id GROUP BY customer_id
    """
)

# The run is the span of the batch's stage outputs; each failure falls in one of
# TIME_BUCKETS equal slices of it. The longest run of neighbouring failed orders
# is a gaps-and-islands count: neighbours share position - row_number(). One row.
_TIMING = text(
    f"""
    WITH run AS (
        SELECT min(o.created_at) AS started, max(o.created_at) AS ended
        FROM items i JOIN stage_outputs o ON o.item_id = i.id
        WHERE i.batch_id = :batch_id
    ), failed AS (
        SELECT i.position, i.order_id, f.created_at AS at,
               i.position - row_number() OVER (ORDER BY i.position) AS island
        FROM items i {_FAILURE}
        WHERE i.batch_id = :batch_id AND i.state = :failed
    ), buckets AS (
        SELECT width_bucket(extract(epoch FROM f.at), extract(epoch FROM r.started),
                            extract(epoch FROM r.ended) + 0.001, :buckets) AS bucket,
               count(*) AS failures, min(f.at) AS first_at, max(f.at) AS last_at
        FROM failed f CROSS JOIN run r WHERE f.at IS NOT NULL GROUP BY 1
    ), islands AS (
        SELECT count(*) AS length, min(position) AS first_position,
               max(position) AS last_position,
               (array_agg(order_id ORDER BY position))[1] AS first_order,
               (array_agg(order_id ORDER BY position DESC))[1] AS last_order
        FROM failed GROUP BY island
    )
    SELECT (SELECT extract(epoch FROM ended - started) FROM run),
           (SELECT json_agg(b ORDER BY b.bucket) FROM buckets b),
           (SELECT row_to_json(s) FROM islands s ORDER BY s.length DESC, s.first_position
            LIMIT 1)
    """
)

# Lineage: an item's root is its origin_item_id (recovery items) or itself; the
# members are the root and every item naming it. Failures counted over all members.
_PROBLEMATIC = text(
    """
    WITH roots AS (
        SELECT DISTINCT coalesce(origin_item_id, id) AS root FROM items WHERE batch_id = :batch_id
    ), members AS (
        SELECT root, root AS item_id FROM roots
        UNION ALL
        SELECT r.root, m.id FROM roots r JOIN items m ON m.origin_item_id = r.root
    )
    SELECT (SELECT order_id FROM items WHERE id = m.root), count(*),
           count(DISTINCT i.batch_id)
    FROM members m
    JOIN stage_outputs o ON o.item_id = m.item_id
    JOIN items i ON i.id = m.item_id
    WHERE NOT o.ok AND NOT (o.output ? 'rewrite')
    GROUP BY m.root HAVING count(*) > 1
    ORDER BY count(*) DESC, 1 LIMIT :cap
    """
)

# The last good stage is the newest successful output over the item's lineage: a
# recovered delivery failure got through writing in an earlier batch.
_DOCUMENTS = text(
    f"""
    SELECT i.order_id, f.stage, f.output ->> 'category', i.error_class,
           f.output ->> 'code', coalesce(i.error_message, f.output ->> 'error'),
           coalesce((f.output ->> 'attempts')::int, f.attempt), g.stage, i.customer_id,
           i.publisher_domain, f.created_at
    FROM items i {_FAILURE}
    LEFT JOIN LATERAL (
        SELECT o.stage FROM stage_outputs o
        WHERE o.ok AND o.item_id IN (
            SELECT coalesce(i.origin_item_id, i.id)
            UNION ALL
            SELECT m.id FROM items m WHERE m.origin_item_id = coalesce(i.origin_item_id, i.id)
        )
        ORDER BY o.id DESC LIMIT 1
    ) g ON true
    WHERE i.batch_id = :batch_id AND i.state = :failed
    ORDER BY i.position LIMIT :cap
    """
)


def analyze_batch_failures(batch_id: str) -> dict[str, Any]:
    """The failure report of ``batch_id`` (fields: docs/recovery.md), JSON-ready.

    Raises:
        UnknownBatch: no batch has this id (nothing is read further, nothing written).
    """
    with transaction() as session:
        facts = load_facts(session, batch_id)
    return analyse(facts)


def load_facts(session: Session, batch_id: str) -> FailureFacts:
    """Aggregate what the ledger knows of ``batch_id``'s failures (five queries).

    Raises:
        UnknownBatch: no batch has this id.
    """
    batch = session.execute(_BATCH, {"batch_id": batch_id}).first()
    if batch is None:
        raise UnknownBatch(f"no batch with id {batch_id!r}")
    params = {"batch_id": batch_id, "failed": ItemState.FAILED.value}
    reasons, publishers, customers = _counts(session.execute(_COUNTS, params).all())
    run_seconds, buckets, longest = _timing(session, params)
    problematic = session.execute(_PROBLEMATIC, {**params, "cap": PROBLEMATIC_CAP})
    documents = session.execute(_DOCUMENTS, {**params, "cap": DOCUMENTS_CAP})
    return FailureFacts(
        batch_id=batch_id,
        total_orders=int(batch.total_items),
        reasons=reasons,
        publishers=publishers,
        customers=customers,
        run_seconds=run_seconds,
        buckets=buckets,
        longest_run=longest,
        problematic=tuple(ProblematicItem(str(o), int(n), int(b)) for o, n, b in problematic),
        documents=tuple(_document(row) for row in documents),
    )


def _counts(
    rows: Sequence[Sequence[Any]],
) -> tuple[tuple[ReasonCount, ...], tuple[GroupCount, ...], tuple[GroupCount, ...]]:
    reasons = tuple(
        ReasonCount.stored(stage, category, error_class, code, int(n))
        for kind, stage, category, error_class, code, n, _ in rows
        if kind == "reason"
    )

    def groups(kind: str) -> tuple[GroupCount, ...]:
        return tuple(GroupCount(str(r[1]), int(r[5]), int(r[6])) for r in rows if r[0] == kind)

    return reasons, groups("publisher"), groups("customer")


def _timing(
    session: Session, params: dict[str, Any]
) -> tuple[float, tuple[TimeBucket, ...], ConsecutiveRun | None]:
    seconds, buckets, island = session.execute(_TIMING, {**params, "buckets": TIME_BUCKETS}).one()
    return float(seconds or 0.0), _buckets(buckets or []), _island(island)


def _buckets(rows: list[dict[str, Any]]) -> tuple[TimeBucket, ...]:
    # json_agg gives timestamps as ISO strings
    return tuple(
        TimeBucket(
            int(row["failures"]),
            datetime.fromisoformat(row["first_at"]),
            datetime.fromisoformat(row["last_at"]),
        )
        for row in rows
    )


def _island(row: dict[str, Any] | None) -> ConsecutiveRun | None:
    if not row:
        return None
    return ConsecutiveRun(
        int(row["length"]),
        int(row["first_position"]),
        int(row["last_position"]),
        str(row["first_order"]),
        str(row["last_order"]),
    )


def _document(row: Sequence[Any]) -> FailedDocument:
    (order_id, stage, category, error_class, code, reason, attempt, good, customer, publisher,
     failed_at) = row  # fmt: skip
    stored = ReasonCount.stored(stage, category, error_class, code, 1)
    return FailedDocument(
        order_id=str(order_id),
        stage=stored.stage,
        category=stored.category,
        error_class=stored.error_class,
        code=stored.code,
        reason=str(reason or ""),
        attempts=int(attempt or 0),
        last_good_stage=good,
        customer_id=str(customer),
        publisher_domain=str(publisher),
        failed_at=failed_at if isinstance(failed_at, datetime) else None,
    )
