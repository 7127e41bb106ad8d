"""Where a writing chunk runs decides whether it fuses QC (``tasks.fused.stage_to_fuse``)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.settings import get_settings
from pipeline.stage_registry import QC, WRITING, Stage
from tasks.fused import stage_to_fuse


@pytest.fixture()
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _in_a_thread() -> Stage | None:
    # Celery's threads pool runs a task outside the main thread; prefork and solo in it.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(stage_to_fuse, WRITING, "normal").result()


def test_by_default_only_a_process_fuses(
    fresh_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_FUSE_STAGES", "true")
    monkeypatch.delenv("BATCH_FUSE_IN_THREADS", raising=False)

    assert stage_to_fuse(WRITING, "normal") is QC  # a prefork process fuses
    assert _in_a_thread() is None  # the I/O worker leaves QC to the CPU workers


def test_fuse_in_threads_true_fuses_in_a_threads_pool_chunk_too(
    fresh_settings: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_FUSE_STAGES", "true")
    monkeypatch.setenv("BATCH_FUSE_IN_THREADS", "true")

    assert stage_to_fuse(WRITING, "normal") is QC
    assert _in_a_thread() is QC
