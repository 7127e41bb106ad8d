"""The feeder's surplus: writing and delivery get more than the free slots, CPU stages never."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.settings import get_settings
from tasks import slots
from tasks.slots import SlotUser, admissible


@pytest.fixture()
def free_global(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Global cap 10, 8 held; customer and publisher slots all free."""
    monkeypatch.setenv("BATCH_CAP_GLOBAL", "10")
    monkeypatch.setenv("BATCH_CAP_PER_CUSTOMER", "100")
    monkeypatch.setenv("BATCH_CAP_PER_PUBLISHER", "100")
    get_settings.cache_clear()
    monkeypatch.setattr(
        slots, "occupancy", lambda _client, keys: {k: 8 for k in keys if k.endswith("global")}
    )
    yield
    get_settings.cache_clear()


def _users(stage: str, count: int) -> list[SlotUser]:
    return [SlotUser(n, stage, f"c{n}", f"p{n}.example") for n in range(count)]


@pytest.mark.parametrize(("surplus", "sent"), [("0", 2), ("0.3", 5), ("1", 12)])
def test_writing_gets_its_share_more_than_the_free_slots(
    free_global: None, monkeypatch: pytest.MonkeyPatch, surplus: str, sent: int
) -> None:
    monkeypatch.setenv("BATCH_FEED_SURPLUS", surplus)
    get_settings.cache_clear()
    assert sum(admissible(None, _users("writing", 20))) == sent  # type: ignore[arg-type]


def test_a_stage_that_cannot_wait_at_its_slots_gets_no_surplus(
    free_global: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Preflight capped too: it runs in a process, never waits at a slot, so no surplus
    monkeypatch.setenv("BATCH_CAPPED_STAGES", "preflight,writing,delivery")
    monkeypatch.setenv("BATCH_FEED_SURPLUS", "1")
    get_settings.cache_clear()
    assert sum(admissible(None, _users("preflight", 20))) == 2  # type: ignore[arg-type]
