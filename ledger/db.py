"""One SQLAlchemy engine per process and the ``transaction()`` unit of work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from pipeline.settings import get_settings

_engine: Engine | None = None


def engine() -> Engine:
    """Return this process's engine, creating it from ``DATABASE_URL`` on first use."""
    global _engine
    if _engine is None:
        _engine = create_engine(
            get_settings().require_database_url(),
            pool_pre_ping=True,  # survive a PostgreSQL restart without a failed task
            pool_size=5,
            max_overflow=5,
        )
    return _engine


def dispose_engine() -> None:
    """Drop this process's pool, e.g. after a fork, so no connection is shared."""
    global _engine
    if _engine is not None:
        _engine.dispose(close=False)
        _engine = None


@contextmanager
def transaction() -> Iterator[Session]:
    """Yield a session inside one transaction: committed on success, rolled back on error."""
    with Session(engine(), expire_on_commit=False) as session, session.begin():
        yield session
