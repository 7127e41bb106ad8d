"""The monitor's frame costs the same few statements with 1,000 open batches as with ten."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from bench.monitor_frame import add_paused_batches, remove_batches
from cli.monitor_snapshot import take_snapshot
from ledger.db import engine


@pytest.fixture()
def statements(service_env: dict[str, str]) -> Iterator[list[str]]:
    """Every SQL statement this process sends while the test runs."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine(), "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine(), "before_cursor_execute", record)


def _statements_per_frame(seen: list[str], **paging: int) -> tuple[int, dict[str, Any]]:
    seen.clear()
    snapshot = take_snapshot(**paging)
    return len(seen), snapshot


def test_a_frame_is_a_fixed_number_of_statements_whatever_the_open_batches(
    statements: list[str],
) -> None:
    # Paused batches: open, but no worker runs their orders; removed in finally.
    tag = f"scale-{uuid.uuid4().hex[:6]}"
    try:
        # Given ten open batches, a frame costs some statements
        add_paused_batches(f"{tag}-a", 10)
        few, _ = _statements_per_frame(statements)

        # When 990 more are open
        add_paused_batches(f"{tag}-b", 990)
        many, snapshot = _statements_per_frame(statements)
        last, last_page = _statements_per_frame(statements, page=50, page_size=20)

        # Then a frame costs exactly as many statements, and shows one page of them
        assert many == few == last
        assert snapshot["open_batches"] >= 1000 and snapshot["pages"] >= 50
        assert len(snapshot["batches"]) == 20
        priorities = [b["priority"] for b in snapshot["batches"]]
        assert priorities == sorted(priorities, key=["high", "normal", "low"].index)
        assert len(last_page["batches"]) == 20 and last_page["page"] == 50
        mine = [b for b in last_page["batches"] if b["batch_id"].startswith(tag)]
        assert all((b["total"], b["completed"], b["status"]) == (2, 1, "paused") for b in mine)
    finally:
        remove_batches(tag)
