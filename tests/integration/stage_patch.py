"""Swap one stage's preparer or handler for a test, through the stage runtime."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import tasks.stage_runtime as stage_runtime


def patch_stage(
    monkeypatch: pytest.MonkeyPatch, stage: str, *, handle: Any = None, prepare: Any = None
) -> None:
    """Run ``stage`` with ``handle`` and/or ``prepare`` instead of its own, for this test."""
    runtimes = tuple(
        replace(
            runtime,
            handle=handle or runtime.handle,
            prepare=prepare or runtime.prepare,
        )
        if runtime.stage.name == stage
        else runtime
        for runtime in stage_runtime.RUNTIMES
    )
    monkeypatch.setattr(stage_runtime, "RUNTIMES", runtimes)
