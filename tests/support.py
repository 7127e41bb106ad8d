"""Test support shared by fixtures: point this process at a set of servers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


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


def seed_sample_catalog(session: Session | None = None) -> None:
    """Load the catalog the sample orders use (customers and publishers) into the ledger.

    Into ``session`` (a ledger of a test's own) when given, else the session's ledger.
    """
    from cli.sample_orders import load_catalog
    from ledger.catalog import upsert_catalog
    from ledger.db import transaction

    if session is not None:
        upsert_catalog(session, load_catalog())
        return
    with transaction() as own:
        upsert_catalog(own, load_catalog())
