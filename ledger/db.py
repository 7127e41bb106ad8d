"""One SQLAlchemy engine per process and the ``transaction()`` unit of work.

Every ledger session is bounded so that a frozen or cut-off process cannot stall
the others (see docs/RELIABILITY.md, "A frozen worker"): a lock wait ends after
``BATCH_DB_LOCK_TIMEOUT_MS``, PostgreSQL ends a session left idle inside a
transaction after ``BATCH_DB_IDLE_IN_TRANSACTION_TIMEOUT_S`` (releasing its
locks), and TCP keepalives on both ends notice a peer that vanished. Sessions
name their process (``application_name``), so ``pg_stat_activity`` shows which
process holds what.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from pipeline.settings import Settings, get_settings

_engine: Engine | None = None

#: A shorter lock wait for the transactions opened in a ``short_lock_waits`` block.
_lock_timeout_ms: ContextVar[int | None] = ContextVar("ledger_lock_timeout_ms", default=None)

#: Probes after the idle time: a dead peer is noticed after idle + interval x count.
_KEEPALIVE_PROBES = 3


def connect_args(settings: Settings, pid: int | None = None) -> dict[str, Any]:
    """libpq connection parameters that bound lock waits, idle transactions and dead peers.

    Args:
        settings: the lock, idle-in-transaction and keepalive settings.
        pid: the process to name in ``application_name`` (default: this one).

    Returns:
        Keyword arguments for psycopg's ``connect`` (SQLAlchemy's ``connect_args``).
    """
    idle = settings.batch_db_keepalive_idle_s
    interval = max(1, idle // _KEEPALIVE_PROBES)
    idle_in_transaction = settings.batch_db_idle_in_transaction_timeout_s
    server = {
        "lock_timeout": f"{settings.batch_db_lock_timeout_ms}ms",
        "idle_in_transaction_session_timeout": f"{idle_in_transaction}s",
        # The server's side of keepalive: it notices a client that vanished.
        "tcp_keepalives_idle": str(idle),
        "tcp_keepalives_interval": str(interval),
        "tcp_keepalives_count": str(_KEEPALIVE_PROBES),
    }
    return {
        "options": " ".join(f"-c {name}={value}" for name, value in server.items()),
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": _KEEPALIVE_PROBES,
        "application_name": f"batchline/{pid if pid is not None else os.getpid()}",
    }


def engine() -> Engine:
    """Return this process's engine, creating it from ``DATABASE_URL`` on first use."""
    global _engine
    if _engine is None:
        settings = get_settings()
        _engine = create_engine(
            settings.require_database_url(),
            pool_pre_ping=True,  # survive a PostgreSQL restart without a failed task
            pool_size=5,
            # A chunk's concurrent calls (BATCH_IO_CONCURRENCY) may each write briefly
            # (a delivery's idempotency key); extra connections close when returned.
            max_overflow=max(5, settings.batch_io_concurrency),
            connect_args=connect_args(settings),
        )
    return _engine


def dispose_engine() -> None:
    """Drop this process's pool, e.g. after a fork, so no connection is shared."""
    global _engine
    if _engine is not None:
        _engine.dispose(close=False)
        _engine = None


@contextmanager
def short_lock_waits(milliseconds: int) -> Iterator[None]:
    """Within this block, every ``transaction()`` waits at most ``milliseconds`` for a lock.

    A statement that would wait longer fails with ``LockNotAvailable`` (see
    :func:`is_lock_timeout`). The sweeper runs in such a block: recovery must never
    wait on a stranger's locks, it retries in the next sweep instead.
    """
    token = _lock_timeout_ms.set(milliseconds)
    try:
        yield
    finally:
        _lock_timeout_ms.reset(token)


def is_lock_timeout(error: BaseException) -> bool:
    """Whether ``error`` (SQLAlchemy's or psycopg's) is a lock wait that ran out."""
    from psycopg.errors import LockNotAvailable

    return isinstance(getattr(error, "orig", error), LockNotAvailable)


@contextmanager
def transaction() -> Iterator[Session]:
    """Yield a session inside one transaction: committed on success, rolled back on error."""
    with Session(engine(), expire_on_commit=False) as session, session.begin():
        limit = _lock_timeout_ms.get()
        if limit is not None:
            # SET LOCAL: for this transaction only; the pooled connection keeps its default.
            session.execute(
                text("SELECT set_config('lock_timeout', :limit, true)"), {"limit": f"{limit}ms"}
            )
        yield session


def copy_rows(session: Session, target: str, rows: Iterable[Sequence[Any]]) -> None:
    """Bulk-load ``rows`` into ``target`` (``"table (col, …)"``) with ``COPY``: one round trip.

    Inside the session's transaction, so a failed load leaves nothing behind.
    """
    connection = session.connection().connection.driver_connection
    statement = f"COPY {target} FROM STDIN"
    with connection.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row(row)
