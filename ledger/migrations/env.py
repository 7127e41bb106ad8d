"""Alembic environment: online migrations only, serialized by an advisory lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

from ledger.models import Base

# Several processes (test workers, a demo and a worker) may upgrade at once;
# the lock makes the second one wait and then find nothing to do.
MIGRATION_LOCK_ID = 7_004_211


def run_migrations_online() -> None:
    """Run the migrations against ``sqlalchemy.url`` from the Alembic config."""
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by ledger.migrate"
    engine = create_engine(url)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        try:
            context.configure(connection=connection, target_metadata=Base.metadata)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
    engine.dispose()


run_migrations_online()
