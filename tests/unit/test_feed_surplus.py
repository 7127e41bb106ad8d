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


def test_work_already_on_its_way_counts_against_the_free_slots_and_the_surplus(
    free_global: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 2 of 10 global slots free, a surplus of 0.3 (13 in all), a customer cap of
    # 3 (3.9), and 4 of customer c0's items sent by an earlier feed, on their way
    monkeypatch.setenv("BATCH_FEED_SURPLUS", "0.3")
    monkeypatch.setenv("BATCH_CAP_PER_CUSTOMER", "3")
    get_settings.cache_clear()
    earlier = slots.promised([(SlotUser(0, "writing", "c0", "p.example"), 4)])

    # When this feed asks which of 20 writing items (c0..c19) fit
    fits = admissible(None, _users("writing", 20), earlier)  # type: ignore[arg-type]

    # Then c0 gets none (its 4 on their way are past 3.9), and the 8 held and 4 on
    # their way leave one place of the 13: for c1 only
    assert fits == [False, True] + [False] * 18
    assert admissible(None, _users("writing", 20)) == [True] * 5 + [False] * 15  # type: ignore[arg-type]


def test_what_is_on_its_way_to_other_stages_or_uncapped_scopes_is_not_counted() -> None:
    # Preflight holds no slot by default; delivery only its publisher's
    earlier = slots.promised(
        [(SlotUser(0, "preflight", "c1", "p.example"), 5), (SlotUser(0, "delivery", "c1", "p"), 2)]
    )
    assert earlier == {slots.slot_claim(SlotUser(0, "delivery", "c1", "p")).keys[2]: 2}
