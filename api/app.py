"""The FastAPI application: routers under ``/v1``, the body limit, CORS, error handlers."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api import (
    events,
    page,
    routes_batches,
    routes_delete,
    routes_health,
    routes_intake,
    routes_orders,
    ws,
)
from api.body import BodyLimit
from api.errors import install_error_handlers
from api.readiness import LaneSightings
from api.routes_metrics import make_scraper, metrics_router
from pipeline.settings import get_settings


def create_app() -> FastAPI:
    """Build the API from the current settings (``batchline api`` serves it on uvicorn)."""
    settings = get_settings()
    app = FastAPI(
        title="batchline",
        version="1",
        description="Batches of backlink orders through preflight, writing, QC and delivery.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.hub = events.make_hub()
    app.state.lanes = LaneSightings()
    app.state.scraper = make_scraper()
    for module in (
        routes_batches,
        routes_delete,
        routes_intake,
        routes_orders,
        events,
        ws,
        routes_health,
        page,
    ):
        app.include_router(module.router)
    app.include_router(metrics_router(settings.api_metrics_public))
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)
    origins = settings.cors_origins()
    if origins:  # off unless configured: no CORS headers, browsers keep other origins out
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    return app
