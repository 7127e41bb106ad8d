"""``batchline demo --scheduled`` as a user runs it: every stage in windows seconds apart.

Against the session's servers, on a Redis database of its own (the session's
workers must not take the demo's chunks). The windows it opened are in the
ledger's ``schedule_windows``; the test deletes them afterwards so no later
test's catch-up finds a stage that "ran before".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from ledger.db import transaction
from ledger.models import Event, ScheduleWindow
from tests.e2e.test_cli import batchline

pytestmark = pytest.mark.e2e

SCHEDULED_DEMO_REDIS_DB = 2


def test_scheduled_demo_runs_every_stage_in_windows_and_delivers(
    service_env: dict[str, str], tmp_path: Path, isolated_redis: Callable[[int], str]
) -> None:
    env = {
        **service_env,
        "REDIS_URL": isolated_redis(SCHEDULED_DEMO_REDIS_DB),
        "BATCH_OUTPUT_DIR": str(tmp_path / "outbox"),
    }
    started = datetime.now(UTC)
    try:
        result = batchline("demo", "--orders", "12", "--scheduled", "--json", env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        summary = json.loads(result.stdout)
        # It announced each stage's compressed schedule, and still delivered the good orders
        for stage in ("preflight", "writing", "qc", "delivery"):
            assert f"{stage}: every 10s+" in result.stderr
        assert summary["delivered"] >= 11
        # Then every stage's orders went through windows the ledger recorded, once per run
        with transaction() as session:
            runs = session.execute(
                select(ScheduleWindow.stage, ScheduleWindow.run_at).where(
                    ScheduleWindow.created_at >= started
                )
            ).all()
            opened = session.scalars(
                select(Event.kind).where(
                    Event.created_at >= started, Event.kind.like("window_opened%")
                )
            ).all()
        assert {stage for stage, _ in runs} == {"preflight", "writing", "qc", "delivery"}
        assert len(runs) == len(set(runs)) == len(opened)
    finally:
        with transaction() as session:
            session.execute(delete(ScheduleWindow).where(ScheduleWindow.created_at >= started))
