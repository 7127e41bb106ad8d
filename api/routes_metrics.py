"""``GET /metrics``: the exporter's collector (``metrics.exporter``) served by the API.

Behind a key of any scope unless ``API_METRICS_PUBLIC=true``, for a Prometheus that
scrapes from inside a network that keeps everyone else out.
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.auth import require
from pipeline.api_access import Scope


class _Scraper:
    """One collector per API process, created at the first scrape (not at import)."""

    def __init__(self) -> None:
        self._registry: Any = None
        # The collector keeps counters between scrapes: one scrape at a time.
        self._lock = threading.Lock()

    def scrape(self) -> bytes:
        """The Prometheus text exposition of every batchline metric."""
        from prometheus_client import CollectorRegistry, generate_latest

        from metrics.exporter import BatchlineCollector
        from metrics.item_snapshot import REFRESH_SECONDS

        with self._lock:
            if self._registry is None:
                self._registry = CollectorRegistry(auto_describe=False)
                # Order counts from the background snapshot: a scrape stays cheap at any backlog.
                self._registry.register(BatchlineCollector(refresh_seconds=REFRESH_SECONDS))
            return bytes(generate_latest(self._registry))


def metrics_router(public: bool) -> APIRouter:
    """The ``/metrics`` route, open when ``public`` and otherwise needing any key."""
    dependencies = [] if public else [Depends(require(Scope.READ))]
    router = APIRouter(tags=["health"], dependencies=dependencies)

    @router.get("/metrics", response_class=Response)
    def metrics(request: Request) -> Response:
        """Prometheus metrics: lanes, pool, batches, slots, rate buckets, errors (metrics.md)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        scraper: _Scraper = request.app.state.scraper
        return Response(scraper.scrape(), media_type=CONTENT_TYPE_LATEST)

    return router


def make_scraper() -> _Scraper:
    """The process's scraper (kept on ``app.state``)."""
    return _Scraper()
