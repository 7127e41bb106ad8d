"""What one QC chunk costs as its publishers' history of approved articles grows.

``python -m bench.qc_history`` stores, for every sample publisher, ``h`` approved QC
outputs (real reports of offline-writer articles) for h = 0, 50, 100, 200 (QC
compares with at most :data:`tasks.preparers.SIGNATURES_PER_PUBLISHER`) and times
QC chunks of sample orders in this process: the preparer (the signatures query
and decoding) and the handler (the article checks, the near-duplicate comparison).
Only ratios against h = 0, measured in the same run, mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text

#: Orders per timed QC chunk (the QC stage's default optimal chunk).
CHUNK = 20

_STORE = text(
    """
    INSERT INTO stage_outputs (item_id, stage, attempt, ok, output, duration_ms,
                               publisher_domain)
    SELECT id, 'qc', 1, true, CAST(:output AS jsonb), 1.0, publisher_domain FROM items
    WHERE batch_id = :batch_id AND publisher_domain = :domain
      AND NOT EXISTS (SELECT 1 FROM stage_outputs o WHERE o.item_id = items.id)
    ORDER BY id LIMIT :count
    """
)


def _articles(orders: Sequence[dict[str, Any]]) -> list[tuple[Any, dict[str, Any]]]:
    from pipeline.manifest import OrderDocument
    from pipeline.writers.offline import OfflineWriter

    writer = OfflineWriter()
    written = []
    for raw in orders:
        order = OrderDocument.model_validate(raw)
        prompt = {"language": order.language, "topic": order.topic, "target_words": 800}
        written.append((order, writer.write(order, prompt)))
    return written


def _report(order: Any, article: dict[str, Any]) -> dict[str, Any]:
    from pipeline.errors import QualityRejected
    from pipeline.stages.qc import run_qc

    try:
        return run_qc(order, article)
    except QualityRejected as rejected:
        return dict(rejected.details)


def _chunk_seconds(batch_id: str, claimed: list[Any], written: list[tuple[Any, Any]]) -> float:
    from pipeline.errors import QualityRejected
    from pipeline.stages.qc import judge_article
    from tasks.preparers import prepare_qc

    started = time.perf_counter()
    prepared = prepare_qc(batch_id, claimed)
    for item, (order, article) in zip(claimed, written, strict=True):
        context = prepared[item.item_id]
        with contextlib.suppress(QualityRejected):  # a rejection costs the same checks
            judge_article(
                order,
                article,
                publisher=context["publisher"],
                earlier_signatures=context["signatures"],
            )
    return time.perf_counter() - started


#: QC's signature query of session 4, one row per signature (for --compare). The walk
#: uses today's index (same rows, same order); what differs is reading whole reports.
_ROWS_QUERY = text(
    """
    SELECT d.domain, recent.signature
    FROM unnest(CAST(:domains AS text[])) AS d(domain)
    CROSS JOIN LATERAL (
        SELECT o.output->'signature' AS signature FROM stage_outputs o
        WHERE o.publisher_domain = d.domain AND o.signature IS NOT NULL
          AND NOT (o.item_id = ANY(:ids))
        ORDER BY o.id DESC
        LIMIT :per_domain
    ) recent
    """
)
#: Session 5's: one JSON array per publisher, still read out of the whole reports.
_JSON_QUERY = text(
    """
    SELECT d.domain, recent.signatures
    FROM unnest(CAST(:domains AS text[])) AS d(domain)
    CROSS JOIN LATERAL (
        SELECT jsonb_agg(newest.signature ORDER BY newest.id DESC) AS signatures
        FROM (
            SELECT o.id, o.output->'signature' AS signature FROM stage_outputs o
            WHERE o.publisher_domain = d.domain AND o.signature IS NOT NULL
              AND NOT (o.item_id = ANY(:ids))
            ORDER BY o.id DESC
            LIMIT :per_domain
        ) newest
    ) recent
    WHERE recent.signatures IS NOT NULL
    """
)
#: The ways --compare times, oldest first.
WAYS = ("rows", "json", "packed")


def _fetch(session: Any, way: str, domains: list[str], ids: list[int]) -> dict[str, Any]:
    from ledger.items import article_signatures
    from pipeline.similarity import SignatureSet
    from tasks.preparers import SIGNATURES_PER_PUBLISHER

    params = {"domains": domains, "ids": ids, "per_domain": SIGNATURES_PER_PUBLISHER}
    if way == "rows":  # 200 rows per publisher, each decoded, lists for every article
        found: dict[str, Any] = {}
        for domain, signature in session.execute(_ROWS_QUERY, params):
            found.setdefault(str(domain), []).append([int(v) for v in signature])
        return found
    if way == "json":
        rows = session.execute(_JSON_QUERY, params)
        return {str(domain): SignatureSet(signatures) for domain, signatures in rows}
    return dict(
        article_signatures(session, domains, exclude=ids, per_domain=SIGNATURES_PER_PUBLISHER)
    )


def _history_part(claimed: list[Any], written: list[Any], *, way: str) -> float:
    """Seconds of the history-dependent part of a QC chunk: fetch, decode, compare."""
    from ledger.db import transaction
    from pipeline.similarity import max_similarity, minhash_signature

    mine = [minhash_signature(str(article.get("html", ""))) for _, article in written]
    domains = sorted({item.publisher_domain for item in claimed})
    ids = [item.item_id for item in claimed]
    started = time.perf_counter()
    with transaction() as session:
        found = _fetch(session, way, domains, ids)
    for item, signature in zip(claimed, mine, strict=True):
        max_similarity(signature, found.get(item.publisher_domain, []))
    return time.perf_counter() - started


def _compare(history: int, claimed: list[Any], written: list[Any], chunks: int) -> None:
    """Print the signatures part's median per way, the ways alternated (same load)."""
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    for _ in range(chunks):
        for way in WAYS:
            times[way].append(_history_part(claimed, written, way=way))
    parts = ", ".join(f"{way} {statistics.median(times[way]) * 1000:.1f} ms" for way in WAYS)
    print(f"history {history:>4}/publisher: signatures part per chunk: {parts}", flush=True)


def measure(
    histories: Sequence[int], chunks: int, work_dir: Path, *, compare: bool = False
) -> dict[int, float]:
    """Median seconds per QC chunk at each per-publisher history, in one ledger."""
    from bench.services import bench_services
    from cli.sample_orders import load_catalog, sample_orders
    from ledger.batches import insert_batch
    from ledger.db import transaction
    from ledger.items import ClaimedItem
    from pipeline.manifest import validate_submission

    documents = sample_orders(4000, seed=5, tag="qch")
    batch_id = "qc-history"
    results: dict[int, float] = {}
    with bench_services(work_dir.resolve()):
        submission = validate_submission(documents, "bench", "normal", None, max_items=5000)
        with transaction() as session:
            ids = insert_batch(
                session,
                batch_id=batch_id,
                submission=submission,
                manifest_sha256=submission.digest(),
                task_id="t",
            )
        # The timed chunks: the last orders, never among the stored history.
        timed = [
            ClaimedItem(item_id, doc, 0, doc["customer_id"], doc["publisher_domain"])
            for item_id, doc in zip(ids[-CHUNK:], documents[-CHUNK:], strict=True)
        ]
        written = _articles(documents[-CHUNK:])
        sample = _articles(documents[:1])[0]
        output = json.dumps(_report(*sample))
        stored = 0
        for history in histories:
            with transaction() as session:
                for publisher in load_catalog().publishers:
                    params = {"output": output, "batch_id": batch_id, "domain": publisher.domain}
                    session.execute(_STORE, {**params, "count": history - stored})
            stored = history
            _chunk_seconds(batch_id, timed, written)  # warm caches and connections
            times = [_chunk_seconds(batch_id, timed, written) for _ in range(chunks)]
            results[history] = statistics.median(times)
            if compare:
                _compare(history, timed, written, chunks)
            base = results[histories[0]]
            print(
                f"history {history:>4}/publisher: {results[history] * 1000:7.1f} ms per chunk of"
                f" {CHUNK} ({results[history] / base:.2f}x h={histories[0]})",
                flush=True,
            )
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and measure."""
    parser = argparse.ArgumentParser(prog="python -m bench.qc_history", description=__doc__)
    parser.add_argument("--histories", default="0,50,100,200")
    parser.add_argument("--chunks", type=int, default=15, help="timed chunks per history")
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/qc-history"))
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also time the signatures part each way (" + ", ".join(WAYS) + "), alternately",
    )
    args = parser.parse_args(argv)
    histories = [int(value) for value in args.histories.split(",")]
    measure(histories, args.chunks, args.work_dir, compare=args.compare)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
