"""calculate_priority: the guide's formula, with waiting time raising priority."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.catalog import CustomerTier
from pipeline.manifest import OrderDocument
from pipeline.priority import calculate_priority

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def order(deadline: datetime | None = None) -> OrderDocument:
    return OrderDocument(
        order_id="o1",
        customer_id="c1",
        target_url="https://shop.example.com/x",
        anchor_text="trail shoes",
        publisher_domain="blog.example.org",
        language="en",
        topic="running",
        deadline=deadline,
    )


@pytest.mark.parametrize(
    ("tier", "deadline_in", "expected"),
    [
        (None, None, 100),
        (CustomerTier.BASIC, None, 100),
        (CustomerTier.STANDARD, None, 120),
        (CustomerTier.PREMIUM, None, 150),
        (CustomerTier.BASIC, timedelta(hours=23), 200),
        (CustomerTier.BASIC, timedelta(hours=-5), 200),  # overdue counts as urgent
        (CustomerTier.BASIC, timedelta(hours=24), 150),
        (CustomerTier.BASIC, timedelta(hours=71), 150),
        (CustomerTier.BASIC, timedelta(hours=72), 100),
        (CustomerTier.PREMIUM, timedelta(hours=2), 250),
    ],
)
def test_tier_and_deadline_follow_the_guide(tier, deadline_in, expected) -> None:
    deadline = NOW + deadline_in if deadline_in is not None else None
    assert calculate_priority(order(deadline), tier=tier, waiting_since=NOW, now=NOW) == expected


def test_waiting_raises_priority_two_points_an_hour() -> None:
    waited = calculate_priority(
        order(), tier=None, waiting_since=NOW - timedelta(hours=10), now=NOW
    )
    assert waited == 120


def test_an_old_basic_order_overtakes_a_fresh_urgent_premium_one() -> None:
    fresh_urgent = calculate_priority(
        order(NOW + timedelta(hours=1)), tier=CustomerTier.PREMIUM, waiting_since=NOW, now=NOW
    )
    old_basic = calculate_priority(
        order(), tier=CustomerTier.BASIC, waiting_since=NOW - timedelta(hours=76), now=NOW
    )
    assert old_basic > fresh_urgent


@settings(deadline=None, database=None)
@given(
    tier=st.sampled_from([None, *CustomerTier]),
    hours_to_deadline=st.one_of(st.none(), st.floats(-1000, 1000)),
    hours_waiting=st.floats(-10, 10_000),
)
def test_priority_is_never_below_one_and_never_falls_with_waiting(
    tier, hours_to_deadline, hours_waiting
) -> None:
    deadline = NOW + timedelta(hours=hours_to_deadline) if hours_to_deadline is not None else None
    since = NOW - timedelta(hours=hours_waiting)
    score = calculate_priority(order(deadline), tier=tier, waiting_since=since, now=NOW)
    later = calculate_priority(
        order(deadline), tier=tier, waiting_since=since - timedelta(hours=1), now=NOW
    )
    assert score >= 1
    assert later >= score
