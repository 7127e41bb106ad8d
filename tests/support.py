"""Test support shared by fixtures: point this process at a set of servers."""

from __future__ import annotations

import os
from collections.abc import Mapping


def apply_environment(env: Mapping[str, str]) -> None:
    """Export ``env`` and make settings, Celery, the engine and Redis client follow it."""
    os.environ.update(env)
    from pipeline.settings import get_settings

    get_settings.cache_clear()
    from celery_app import reconfigure
    from ledger.db import dispose_engine
    from metrics.redis_client import reset_redis_client

    reconfigure()
    dispose_engine()
    reset_redis_client()


def restore_environment(saved: Mapping[str, str]) -> None:
    """Put the process environment back to ``saved`` and re-apply it."""
    os.environ.clear()
    os.environ.update(saved)
    apply_environment({})


def seed_sample_catalog() -> None:
    """Load the catalog the sample orders use (customers and publishers) into the ledger."""
    from cli.sample_orders import load_catalog
    from ledger.catalog import upsert_catalog
    from ledger.db import transaction

    with transaction() as session:
        upsert_catalog(session, load_catalog())
