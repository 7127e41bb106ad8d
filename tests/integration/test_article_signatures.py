"""QC's near-duplicate look-up from packed signatures (migration 0015) on a real ledger.

The look-up must give QC exactly the verdicts that reading the signatures out of
the QC reports gave (that query is kept below as the reference). The look-up
tests work in one transaction that they roll back, so the session's workers never
see their orders.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.batches import insert_batch
from ledger.items import article_signatures
from ledger.migrate import upgrade
from pipeline.manifest import validate_submission
from pipeline.similarity import minhash_signature, pack_signature
from pipeline.stages.qc import check_near_duplicate
from tests.conftest import _drop_database, _fresh_database
from tests.integration.helpers import make_orders
from tests.unit.test_similarity import prose

pytestmark = pytest.mark.integration

#: QC's look-up before 0015: each signature read out of its whole QC report.
_REPORTS_QUERY = text(
    """
    SELECT d.domain, recent.signature
    FROM unnest(CAST(:domains AS text[])) AS d(domain)
    CROSS JOIN LATERAL (
        SELECT o.output->'signature' AS signature FROM stage_outputs o
        WHERE o.publisher_domain = d.domain AND o.stage = 'qc' AND o.ok
          AND o.output ? 'signature' AND NOT (o.item_id = ANY(:ids))
        ORDER BY o.id DESC
        LIMIT :per_domain
    ) recent
    """
)
_STORE = text(
    "INSERT INTO stage_outputs (item_id, stage, attempt, ok, output, duration_ms,"
    " publisher_domain) SELECT :i, :stage, :n, :ok, CAST(:o AS jsonb), 0, publisher_domain"
    " FROM items WHERE id = :i"
)


def _items(session: Session, count: int, domains: list[str]) -> list[int]:
    orders = make_orders(count, "signatures")
    for n, order in enumerate(orders):
        order["publisher_domain"] = domains[n % len(domains)]
    batch_id = f"sig-{uuid.uuid4().hex[:8]}"
    submission = validate_submission(orders, "p", "low", {}, max_items=1000)
    return insert_batch(
        session, batch_id=batch_id, submission=submission, manifest_sha256="x", task_id="t"
    )


def _report(signature: list[int]) -> str:
    return json.dumps({"passed": True, "checks": {}, "signature": signature})


def _by_reports(session: Session, domains: list[str], ids: list[int]) -> dict[str, Any]:
    found: dict[str, list[list[int]]] = {}
    params = {"domains": domains, "ids": ids, "per_domain": 200}
    for domain, signature in session.execute(_REPORTS_QUERY, params):
        found.setdefault(str(domain), []).append(signature)
    return found


def test_packed_look_up_gives_the_verdicts_the_reports_gave(rolled_back: Session) -> None:
    # Given 460 approved articles over two publishers (both past the 200 cap), rejected
    # and writing outputs beside them, and new articles, some near copies of old ones
    domains = ["sig-x.example", "sig-y.example"]
    ids = _items(rolled_back, 520, domains)
    history, chunk = ids[:500], ids[500:]
    texts = [" ".join(prose(seed, 30)) for seed in range(len(history))]
    rows = [{"i": i, "stage": "qc", "n": 1, "ok": n % 13 != 0, "o": _report(minhash_signature(t))}
            for n, (i, t) in enumerate(zip(history, texts, strict=True))]  # fmt: skip
    rows += [
        {"i": i, "stage": "writing", "n": 1, "ok": True, "o": '{"html": "x"}'} for i in history[:5]
    ]
    rolled_back.execute(_STORE, rows)
    # (article, its publisher): history article k belongs to domains[k % 2]
    new = [(texts[499], 1), (texts[498] + " and one more", 0), (texts[3], 1)]
    new += [(" ".join(prose(999, 30)), 0), (texts[493][:300] + " ".join(prose(998, 15)), 1)]
    new += [("", 0)]

    # When QC looks the publishers' signatures up both ways
    before = _by_reports(rolled_back, domains, chunk)
    after = article_signatures(rolled_back, domains, exclude=chunk, per_domain=200)

    # Then the same signatures come back, and every article gets the same verdict
    assert {d: list(s) for d, s in after.items()} == before
    assert all(len(before[d]) == 200 for d in domains)
    verdicts = []
    for article, publisher in new:
        domain, mine = domains[publisher], minhash_signature(article)
        old = check_near_duplicate(mine, before[domain], 0.8)
        assert check_near_duplicate(mine, after[domain], 0.8) == old
        verdicts.append(old.passed)
    assert False in verdicts and True in verdicts  # both verdicts were exercised


def test_every_writer_of_an_approved_report_fills_the_packed_column(rolled_back: Session) -> None:
    # Given one item's approved and rejected QC reports and a writing output
    (item,) = _items(rolled_back, 1, ["sig-z.example"])
    signature = minhash_signature("some words of an article about gardens and tools")
    stored = [
        ("qc", True, _report(signature)),
        ("qc", False, _report(signature)),
        ("writing", True, '{"signature": [1, 2]}'),
        ("qc", True, '{"passed": true}'),
    ]
    for n, (stage, ok, output) in enumerate(stored):
        rolled_back.execute(_STORE, {"i": item, "stage": stage, "n": n, "ok": ok, "o": output})

    # Then only the approved QC report with a signature has it packed, as Python packs it
    packed = rolled_back.execute(
        text("SELECT signature FROM stage_outputs WHERE item_id = :i ORDER BY id"), {"i": item}
    ).scalars()
    assert [None if value is None else bytes(value) for value in packed] == [
        pack_signature(signature),
        None,
        None,
        None,
    ]


def _indexes(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as connection:
        rows = connection.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
        return {name for (name,) in rows}


def _seed_0013(url: str, signature: list[int]) -> None:
    with psycopg.connect(url) as connection:
        connection.execute(
            "INSERT INTO batches (id, project_uuid, priority, status, options,"
            " manifest_sha256, total_items) VALUES ('b', 'p', 'normal', 'RUNNING', '{}', 'x', 1)"
        )
        connection.execute(
            "INSERT INTO items (batch_id, position, order_id, customer_id, publisher_domain,"
            " document, state, attempts) VALUES ('b', 0, 'o1', 'c', 'p', '{}', 'DONE', 0)"
        )
        connection.execute(
            "INSERT INTO stage_outputs (item_id, stage, attempt, ok, output, duration_ms,"
            " publisher_domain) SELECT id, 'qc', 1, true, %s, 0, 'p' FROM items",
            [_report(signature)],
        )


def test_migration_0015_backfills_the_signatures_and_downgrades(service_env) -> None:
    # Given a ledger at 0013 holding one approved QC report
    url, name = _fresh_database(service_env["DATABASE_URL"])
    signature = minhash_signature("an article stored before the migration")
    try:
        upgrade(url, "0013")
        _seed_0013(url, signature)

        # When it is migrated to 0015, then the report's signature is packed beside it
        upgrade(url, "0015")
        with psycopg.connect(url) as connection:
            row = connection.execute("SELECT signature FROM stage_outputs").fetchone()
        assert row is not None and bytes(row[0]) == pack_signature(signature)
        assert "ix_stage_outputs_article_signatures" in _indexes(url)
        assert "ix_stage_outputs_signatures" not in _indexes(url)

        # When it is downgraded, then the column and its function are gone, the old index back
        from alembic import command

        from ledger.migrate import alembic_config

        command.downgrade(alembic_config(url), "0013")
        with psycopg.connect(url) as connection:
            columns = connection.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'stage_outputs'"
            ).fetchall()
            functions = connection.execute(
                "SELECT 1 FROM pg_proc WHERE proname = 'qc_signature_bytes'"
            ).fetchall()
        assert ("signature",) not in columns and functions == []
        assert "ix_stage_outputs_signatures" in _indexes(url)
        assert "ix_stage_outputs_article_signatures" not in _indexes(url)
    finally:
        _drop_database(service_env["DATABASE_URL"], name)
