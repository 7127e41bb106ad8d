"""``batchline.maintenance.warm_cache``: warm a normal or low batch's caches in the background."""

from __future__ import annotations

from typing import Any

import structlog

from cache_warming.warming import WARM_TASK, warm
from celery_app import app
from pipeline.warming import WarmPlan

log = structlog.get_logger(__name__)


@app.task(name=WARM_TASK, ignore_result=True)
def warm_cache(plan: dict[str, Any]) -> None:
    """Warm what ``plan`` (a :class:`WarmPlan` as JSON) names; a failure only costs reads."""
    try:
        warmed = warm(WarmPlan.from_json(plan))
    except Exception as error:  # the batch runs anyway, reading through the caches
        log.warning("cache.warm_failed", error=str(error))
        return
    log.info("cache.warmed", **warmed)
