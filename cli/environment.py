"""Bring up what a command needs: servers (embedded if not configured) and the schema."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from cli.embedded import ServiceUrls, services_for
from pipeline.settings import get_settings


@contextmanager
def prepared_environment() -> Iterator[ServiceUrls]:
    """Yield service URLs with the ledger migrated.

    When ``REDIS_URL`` or ``DATABASE_URL`` is unset, a real server is started
    for it (and stopped on exit); when set, nothing is started. The URLs are
    exported to this process's environment so that settings, the Celery app and
    any child processes see them.
    """
    settings = get_settings()
    with services_for(settings.redis_url, settings.database_url) as urls:
        os.environ["REDIS_URL"] = urls.redis_url
        os.environ["DATABASE_URL"] = urls.database_url
        get_settings.cache_clear()
        from celery_app import reconfigure
        from ledger.migrate import upgrade

        reconfigure()

        upgrade(get_settings().require_database_url())
        yield urls
