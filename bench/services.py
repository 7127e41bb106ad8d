"""The servers, database and environment one benchmark session runs against.

Redis: the benchmark uses database 11 of the configured (or embedded) server and
**flushes it** when the session starts and before each scenario, so never point
``REDIS_URL`` at a server whose database 11 holds anything you want to keep.
PostgreSQL: a fresh ``batchline_bench_<hex>`` database, migrated and seeded with
the sample catalog, dropped when the session ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

from cli.embedded import services_for
from pipeline.settings import get_settings

#: Redis database of the benchmark (tests use 15, the CLI tests 13).
BENCH_REDIS_DB = 11


@dataclass(frozen=True)
class BenchEnv:
    """Where one benchmark session's servers and files are.

    Attributes:
        env: ``REDIS_URL``, ``DATABASE_URL`` and ``BATCH_OUTPUT_DIR`` for child processes.
        work_dir: scratch directory of the session.
        log_dir: where worker and submitter logs go.
    """

    env: dict[str, str]
    work_dir: Path
    log_dir: Path


def redis_url_with_db(url: str, db: int) -> str:
    """Return ``url`` pointing at Redis database ``db`` (``redis://``, ``rediss://``, ``unix://``)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":  # the database travels in the query: unix:///sock?db=0
        query = dict(parse_qsl(parts.query))
        query["db"] = str(db)
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{db}"))


def flush_broker() -> None:
    """Empty the benchmark's Redis database: queues, unacked messages and counters.

    Scenarios call this before they start workers, so messages a failed run left
    behind cannot be consumed (or counted in memory) by the next one.
    """
    client = redis.Redis.from_url(get_settings().require_redis_url())
    try:
        client.flushdb()
    finally:
        client.close()


def _fresh_database(admin_url: str) -> tuple[str, str]:
    """Create ``batchline_bench_<hex>`` on the server of ``admin_url``; return (url, name)."""
    name = f"batchline_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = admin_url.rpartition("/")
    return f"{base}/{name}", name


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _apply_environment(env: Mapping[str, str]) -> None:
    """Export ``env`` and make settings, Celery, the engine and the Redis client follow it."""
    os.environ.update(env)
    get_settings.cache_clear()
    from celery_app import reconfigure
    from ledger.db import dispose_engine
    from metrics.redis_client import reset_redis_client

    reconfigure()
    dispose_engine()
    reset_redis_client()


def _prepare_ledger() -> None:
    """Migrate the fresh database and load the sample catalog the scenarios' orders use."""
    from cli.sample_orders import load_catalog
    from ledger.catalog import upsert_catalog
    from ledger.db import transaction
    from ledger.migrate import upgrade

    upgrade(get_settings().require_database_url())
    with transaction() as session:
        upsert_catalog(session, load_catalog())


@contextmanager
def bench_services(work_dir: Path) -> Iterator[BenchEnv]:
    """Start (or reuse) the servers and prepare a fresh database and Redis database.

    Embedded Valkey and PostgreSQL are started when ``REDIS_URL`` / ``DATABASE_URL``
    are unset; the role of a configured ``DATABASE_URL`` needs ``CREATEDB``. This
    process's environment is switched to the benchmark's servers for the block
    (and left so afterwards).

    Args:
        work_dir: scratch directory; logs go to ``work_dir/logs`` and delivered
            articles to ``work_dir/outbox``.

    Yields:
        The environment child processes need.

    Raises:
        EmbeddedServiceError: an embedded server is needed but cannot start.
    """
    settings = get_settings()
    with services_for(settings.redis_url, settings.database_url) as urls:
        database_url, database = _fresh_database(urls.database_url)
        try:
            env = {
                "REDIS_URL": redis_url_with_db(urls.redis_url, BENCH_REDIS_DB),
                "DATABASE_URL": database_url,
                "BATCH_OUTPUT_DIR": str(work_dir / "outbox"),
                # Without the default preflight limit (100/min), which would set every
                # scenario's pace; scenario E sets its own limits.
                "BATCH_RATE_LIMITS": "writer=60/min:20",
            }
            log_dir = work_dir / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            _apply_environment(env)
            flush_broker()
            _prepare_ledger()
            yield BenchEnv(env=env, work_dir=work_dir, log_dir=log_dir)
        finally:
            from ledger.db import dispose_engine

            # FORCE would end our pooled connections anyway; closing them first keeps
            # the pool from handing out dead sockets if the caller carries on.
            dispose_engine()
            _drop_database(urls.database_url, database)
