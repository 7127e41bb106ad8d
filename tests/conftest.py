"""Shared fixtures: real servers (embedded unless configured) and real worker processes.

Unit tests use none of these. Integration and e2e tests get a fresh PostgreSQL
database and a Redis database of their own for the session; when ``REDIS_URL``
points at an existing server, tests use its database 15 and flush it, so point
them at a scratch server.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from sqlalchemy.orm import Session

from cli.embedded import services_for
from cli.workers import ALL_LANES, spawn_beat, spawn_worker, stop_workers
from ledger.db import engine
from pipeline.settings import get_settings
from tests.support import apply_environment, seed_sample_catalog

TEST_REDIS_DB = 15
#: The session workers' log files: a failing test that used them shows their tails.
_WORKER_LOGS: list[Path] = []
_LOG_TAIL_BYTES = 12_000


def pytest_addoption(parser: pytest.Parser) -> None:
    """Options of the chaos suite (tests/chaos): its scale and where its figures go."""
    parser.addoption("--chaos-scale", choices=("small", "full"), default="small")
    parser.addoption("--chaos-report", default="", help="Write chaos figures (JSON) here.")


def _fresh_database(admin_url: str) -> tuple[str, str]:
    name = f"batchline_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}", name


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _redis_database(url: str, database: int) -> str:
    """``url`` pointed at Redis database ``database`` (whether or not it named one)."""
    base, _, _ = (
        url.rstrip("/").rpartition("/") if url.count("/") > 2 else (url.rstrip("/"), "", "")
    )
    return f"{base}/{database}"


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


#: The session servers' environment once ``service_env`` has applied it. A fixture that
#: asks for ``service_env`` lazily (``request.getfixturevalue``) applies it after
#: ``_environment_left_as_found`` took its snapshot, and it stays for the session.
_SESSION_ENV: dict[str, str] = {}


@pytest.fixture(scope="session")
def service_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for a session's servers, with the ledger migrated."""
    settings = get_settings()
    with services_for(settings.redis_url, settings.database_url) as urls:
        database_url, database = _fresh_database(urls.database_url)
        scratch_redis = _redis_database(urls.redis_url, TEST_REDIS_DB)
        _flush(scratch_redis)
        env = {
            "REDIS_URL": scratch_redis,
            "DATABASE_URL": database_url,
            "BATCH_OUTPUT_DIR": str(tmp_path_factory.mktemp("outbox")),
            # Recovery tests wait for sweeps: make them frequent.
            "BATCH_SWEEP_INTERVAL_SECONDS": "1",
            "BATCH_SWEEP_GRACE_SECONDS": "2",
            # Without the default preflight limit (100/min): tests submit hundreds of
            # orders; the limits have tests of their own that set them.
            "BATCH_RATE_LIMITS": "writer=60/min:20",
        }
        try:
            apply_environment(env)
            _SESSION_ENV.update(env)
            from ledger.migrate import upgrade

            upgrade(get_settings().require_database_url())
            seed_sample_catalog()
            yield env
        finally:
            from ledger.db import dispose_engine

            _SESSION_ENV.clear()
            dispose_engine()
            _drop_database(urls.database_url, database)
            _flush(scratch_redis)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the session workers' log tails to the report of a test that failed beside them.

    A batch that never finishes shows only a timeout in the test; what the workers
    did meanwhile is in their logs, which pytest's temporary directories do not keep.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and "workers" in getattr(item, "fixturenames", ()):
        for path in _WORKER_LOGS:
            report.sections.append((f"worker log {path.name} (its end)", _tail(path)))


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, 2) - _LOG_TAIL_BYTES))
            return log.read().decode("utf-8", "replace")
    except OSError as error:
        return f"unreadable: {error}"


def _wait_for_workers(
    count: int, processes: list[subprocess.Popen[bytes]], timeout: float = 60
) -> None:
    from celery_app import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"worker exited early with code {process.returncode}"
        if len(app.control.ping(timeout=0.5)) >= count:
            return
    raise TimeoutError(f"{count} workers did not answer ping within {timeout}s")


@pytest.fixture(scope="session")
def workers(
    service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Two worker processes: one on all lanes (concurrency 2), one dedicated to high."""
    log_dir = tmp_path_factory.mktemp("worker-logs")
    processes = [
        spawn_worker(
            ALL_LANES,
            concurrency=2,
            name="all",
            env=service_env,
            log_path=log_dir / "all.log",
        ),
        spawn_worker(
            ("high",), concurrency=1, name="high", env=service_env, log_path=log_dir / "high.log"
        ),
    ]
    _WORKER_LOGS[:] = [log_dir / "all.log", log_dir / "high.log"]
    try:
        _wait_for_workers(len(processes), processes)
        yield processes
    finally:
        stop_workers(processes)
        _WORKER_LOGS.clear()


@pytest.fixture()
def rolled_back(service_env: dict[str, str]) -> Iterator[Session]:
    """A ledger session whose writes no other test (or worker) ever sees."""
    with Session(engine()) as session:
        session.begin()
        try:
            yield session
        finally:
            session.rollback()


@pytest.fixture()
def outbox(service_env: dict[str, str]) -> Path:
    """Where the filesystem publisher writes articles and receipts in this session."""
    return Path(service_env["BATCH_OUTPUT_DIR"])


@pytest.fixture()
def beat(
    workers: list[subprocess.Popen[bytes]], service_env: dict[str, str], tmp_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """celery beat for one test: the sweeper runs every second while it lives."""
    process = spawn_beat(
        env=service_env, log_path=tmp_path / "beat.log", schedule_path=tmp_path / "schedule"
    )
    try:
        yield process
    finally:
        stop_workers([process])


@pytest.fixture()
def redis_scope(service_env: dict[str, str]) -> Iterator[str]:
    """A name no other test uses, for the test's own keys in the session's Redis.

    Every key whose name contains it is deleted before and after the test, so a
    customer, publisher or service named after it starts and leaves nothing behind.
    """
    from metrics.redis_client import redis_client

    name = f"test-{uuid.uuid4().hex[:12]}"

    def clean() -> None:
        client = redis_client()
        for key in client.scan_iter(match=f"*{name}*"):
            client.delete(key)

    clean()
    yield name
    clean()


@pytest.fixture()
def isolated_redis(service_env: dict[str, str]) -> Iterator[Callable[[int], str]]:
    """Hand out Redis databases of a test's own, flushed before use and again in finally.

    Call it with a database number no other test module uses (the session's own is
    15): the session's workers never consume it, so only the test's workers take its
    messages, and nothing the test leaves there (when it fails, too) reaches the next.
    """
    with _isolated_databases(service_env) as isolate:
        yield isolate


@pytest.fixture(scope="module")
def module_redis(service_env: dict[str, str]) -> Iterator[Callable[[int], str]]:
    """:func:`isolated_redis` for a module-scoped fixture: a worker (and API) started
    once for the module's tests instead of once per test; flushed after the module."""
    with _isolated_databases(service_env) as isolate:
        yield isolate


@contextmanager
def _isolated_databases(service_env: dict[str, str]) -> Iterator[Callable[[int], str]]:
    """Hand out Redis databases other than the session's, flushed now and on exit."""
    handed_out: list[str] = []

    def isolate(database: int) -> str:
        if database == TEST_REDIS_DB:
            raise ValueError(f"database {TEST_REDIS_DB} is the session's; pick another")
        url = _redis_database(service_env["REDIS_URL"], database)
        _flush(url)
        handed_out.append(url)
        return url

    try:
        yield isolate
    finally:
        for url in handed_out:
            _flush(url)


@pytest.fixture()
def halt(service_env: dict[str, str]) -> Iterator[Callable[[str], object]]:
    """``tasks.control.halt_all`` for one test; ``resume_all`` runs in finally.

    The resume runs however the system was halted (this function, ``batchline halt``
    or a CRITICAL error a worker met), so a failing test never leaves it halted.
    """
    from tasks.control import halt_all, resume_all

    try:
        yield halt_all
    finally:
        resume_all()


@pytest.fixture()
def lose_redis(service_env: dict[str, str]) -> Iterator[Callable[[], None]]:
    """Empty the session's Redis database, as a Redis restarted without its data does.

    In finally one sweep runs, so whatever the loss orphaned (messages, progress
    hashes) is sent again from the ledger even when the test failed before its own
    sweeper did: the next test finds Redis consistent with the ledger.
    """

    def lose() -> None:
        _flush(service_env["REDIS_URL"])

    try:
        yield lose
    finally:
        from recovery.sweeper import sweep

        sweep()


#: Variables pytest itself sets and changes between a test's phases.
_PYTEST_OWN_VARIABLES = frozenset({"PYTEST_CURRENT_TEST"})


@pytest.fixture(autouse=True)
def _environment_left_as_found() -> Iterator[None]:
    """Fail a test that changes ``os.environ`` and leaves it changed; put it back.

    Worker and child processes inherit this process's environment: a schedule a test
    exported and left behind once held a later test's orders waiting for a window
    that never opened, far from the cause. Fixtures of a wider scope (a module's own
    ledger) change it before this snapshot and put it back after this check.
    """
    before = dict(os.environ)
    servers_up = bool(_SESSION_ENV)
    yield
    if not servers_up and _SESSION_ENV:
        # The session's servers came up during this test (see _SESSION_ENV): their
        # environment is the session's, not the test's, and must survive the check (once,
        # putting the snapshot back removed it and failed every later test of the worker).
        before.update(_SESSION_ENV)
    after = dict(os.environ)
    changed = sorted(
        name
        for name in before.keys() | after.keys()
        if before.get(name) != after.get(name) and name not in _PYTEST_OWN_VARIABLES
    )
    if changed:
        from tests.support import restore_environment

        restore_environment(before)
        pytest.fail(f"the test left the process environment changed: {', '.join(changed)}")


@pytest.fixture(autouse=True)
def _no_halt_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves the system halted without asking for the ``halt`` fixture.

    The session's workers run every running batch's pooled orders, so an order a test
    plants in a running batch and breaks (a WRITING order without its preflight output)
    halts claiming as corrupted data, and every later test would fail far from the
    cause. This names the test that did it, and resumes so the rest of the run is fair.
    """
    yield
    if "service_env" not in request.fixturenames or "halt" in request.fixturenames:
        return
    from ledger.controls import halt_reason
    from ledger.db import transaction
    from tasks.control import resume_all

    with transaction() as session:
        reason = halt_reason(session)
    if reason is not None:
        resume_all()
        pytest.fail(f"the test left the system halted: {reason}")
