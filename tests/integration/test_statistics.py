"""Fresh planner statistics after a large submission (``ledger.statistics``), on real PostgreSQL.

The rule and the ``ANALYZE`` run against a database of the test's own (a fresh,
migrated one: its tables start with no statistics at all); so does
``refresh_statistics`` (the app pointed at it); ``submit_batch``'s use of them runs
against the session's ledger.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import structlog
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ledger.batches import insert_batch
from ledger.db import transaction
from ledger.migrate import upgrade
from ledger.statistics import SUBMISSION_TABLES, analyze, stale_tables
from metrics.logs import configure_logging
from pipeline.manifest import validate_submission
from pipeline.settings import sqlalchemy_url
from tests.conftest import _drop_database, _fresh_database
from tests.integration.helpers import make_orders
from tests.support import apply_environment, restore_environment

pytestmark = pytest.mark.integration


@pytest.fixture()
def fresh_ledger(service_env: dict[str, str]) -> Iterator[tuple[Engine, str]]:
    """An engine on a freshly migrated database no other test uses, and its plain URL."""
    url, name = _fresh_database(service_env["DATABASE_URL"])
    upgrade(url)
    engine = create_engine(sqlalchemy_url(url))
    try:
        yield engine, url
    finally:
        engine.dispose()
        _drop_database(service_env["DATABASE_URL"], name)


def _insert(engine: Engine, count: int) -> None:
    batch_id = f"stats-{uuid.uuid4().hex[:8]}"
    submission = validate_submission(
        make_orders(count, batch_id), "stats-test", "low", None, max_items=10_000
    )
    with Session(engine) as session, session.begin():
        insert_batch(
            session,
            batch_id=batch_id,
            submission=submission,
            manifest_sha256=submission.digest(),
            task_id="t",
        )


def _known_rows(engine: Engine, table: str) -> float:
    with engine.connect() as connection:
        return float(
            connection.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
            ).scalar_one()
        )


def test_tables_never_analyzed_are_stale_past_autovacuums_base_threshold(fresh_ledger) -> None:
    engine, _ = fresh_ledger
    with Session(engine) as session:
        # autovacuum_analyze_threshold is 50 rows; a table never analyzed knows none.
        assert stale_tables(session, 50) == []
        assert sorted(stale_tables(session, 51)) == sorted(SUBMISSION_TABLES)


def test_analyze_brings_the_estimate_to_the_table_and_moves_the_line(fresh_ledger) -> None:
    engine, _ = fresh_ledger
    _insert(engine, 300)
    assert _known_rows(engine, "items") <= 0  # inserts alone leave the estimate alone
    with Session(engine) as session, session.begin():
        analyze(session, stale_tables(session, 300))
    for table in SUBMISSION_TABLES:
        assert _known_rows(engine, table) == 300
    with Session(engine) as session:
        assert stale_tables(session, 80) == []  # 50 + 10 % of 300
        assert sorted(stale_tables(session, 81)) == sorted(SUBMISSION_TABLES)


def test_analyze_takes_only_the_tables_it_knows(fresh_ledger) -> None:
    with Session(fresh_ledger[0]) as session, pytest.raises(ValueError, match="batches"):
        analyze(session, ["items", "batches"])


@pytest.fixture(autouse=True)
def info_logs() -> Iterator[None]:
    """structlog at INFO, so ``capture_logs`` sees the refresh's lines.

    A CLI test earlier in the same process may have left it filtering at WARNING.
    """
    saved = structlog.get_config()
    configure_logging("INFO")
    try:
        yield
    finally:
        structlog.configure(**saved)


@pytest.fixture()
def app_on_fresh_ledger(fresh_ledger) -> Iterator[tuple[Engine, str]]:
    """The app's own ``transaction()`` pointed at the test's fresh ledger, then back."""
    saved = dict(os.environ)
    apply_environment({"DATABASE_URL": fresh_ledger[1]})
    try:
        yield fresh_ledger
    finally:
        restore_environment(saved)


def test_refresh_statistics_analyzes_past_the_line_only_and_logs_it(app_on_fresh_ledger) -> None:
    from tasks.statistics import refresh_statistics

    engine, _ = app_on_fresh_ledger
    _insert(engine, 40)
    with structlog.testing.capture_logs() as logs:
        assert refresh_statistics("small", 40) == []  # 40 new rows: under the base 50
        _insert(engine, 300)
        assert sorted(refresh_statistics("large", 300)) == sorted(SUBMISSION_TABLES)
    assert [line["batch_id"] for line in logs if line["event"] == "ledger.analyzed"] == ["large"]
    assert _known_rows(engine, "items") == 340


def test_refresh_statistics_skips_quietly_while_the_tables_are_locked(app_on_fresh_ledger) -> None:
    from tasks.statistics import refresh_statistics

    engine, url = app_on_fresh_ledger
    _insert(engine, 300)
    with (
        psycopg.connect(url) as holder,
        structlog.testing.capture_logs() as logs,
    ):
        holder.execute("LOCK TABLE items IN SHARE UPDATE EXCLUSIVE MODE")
        assert refresh_statistics("locked", 300) == []
    assert [line["event"] for line in logs] == ["ledger.analyze_skipped"]
    assert _known_rows(engine, "items") <= 0  # nothing analyzed, the batch untouched


def _items_threshold() -> int:
    """The rows a batch must add to pass the analyze line of the session ledger's ``items``."""
    with transaction() as session:
        known = session.execute(
            text("SELECT greatest(reltuples, 0) FROM pg_class WHERE oid = to_regclass('items')")
        ).scalar_one()
    return int(50 + 0.1 * float(known))


_REFRESH_EVENTS = ("ledger.analyzed", "ledger.analyze_skipped")


def test_submit_batch_refreshes_statistics_after_a_batch_past_the_line(service_env) -> None:
    """On the shared ledger other tests insert and autovacuum analyzes meanwhile: the
    large batch is twice the line (so a moved estimate cannot hide it) and either outcome
    of the refresh counts (autovacuum may hold the lock; the deterministic cases run on
    a ledger of their own above)."""
    from tasks.control import cancel_batch
    from tasks.submit import submit_batch

    with structlog.testing.capture_logs() as logs:
        small = f"stats-small-{uuid.uuid4().hex[:8]}"
        submit_batch(make_orders(10, small), "stats-test", "low", {"batch_id": small})
        cancel_batch(small)
        large = f"stats-large-{uuid.uuid4().hex[:8]}"
        count = 2 * _items_threshold()
        submit_batch(make_orders(count, large), "stats-test", "low", {"batch_id": large})
        cancel_batch(large)
    refreshed = [line["batch_id"] for line in logs if line["event"] in _REFRESH_EVENTS]
    assert refreshed == [large]
