"""``calculate_priority``: the order in which work within one lane is handed out.

Follows the batch guide's formula with one deliberate change: the guide *subtracts*
for waiting time, which lets a stream of fresh premium or urgent orders starve an
old basic one for ever. Here waiting *raises* priority, without a cap, so any order
overtakes every newer one once it has waited long enough (150 points, the largest
boost, is made up in 75 hours).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from pipeline.catalog import CustomerTier
from pipeline.manifest import OrderDocument

BASE: Final = 100
TIER_BONUS: Final[dict[CustomerTier, int]] = {
    CustomerTier.PREMIUM: 50,
    CustomerTier.STANDARD: 20,
    CustomerTier.BASIC: 0,
}
URGENT_BONUS: Final = 100  # deadline within 24 h
SOON_BONUS: Final = 50  # deadline within 72 h
POINTS_PER_HOUR_WAITING: Final = 2


def calculate_priority(
    order: OrderDocument,
    *,
    tier: CustomerTier | None,
    waiting_since: datetime,
    now: datetime,
) -> int:
    """Score an order: higher goes first. Never below 1.

    Args:
        order: the order (its ``deadline`` counts).
        tier: the customer's tier, or ``None`` when the customer is not in the catalog.
        waiting_since: when the order was submitted.
        now: the time to score at (timezone-aware).
    """
    score = BASE + TIER_BONUS.get(tier, 0) if tier else BASE
    score += _deadline_bonus(order.deadline, now)
    hours_waiting = max((now - waiting_since) / timedelta(hours=1), 0.0)
    score += int(hours_waiting * POINTS_PER_HOUR_WAITING)
    return max(score, 1)


def _deadline_bonus(deadline: datetime | None, now: datetime) -> int:
    if deadline is None:
        return 0
    left = deadline - now
    if left < timedelta(hours=24):
        return URGENT_BONUS  # overdue orders are the most urgent of all
    return SOON_BONUS if left < timedelta(hours=72) else 0


def fair_ranks(customer_ids: Sequence[str]) -> list[int]:
    """Each order's position (from 1) among the same customer's orders, in manifest order.

    The feeder breaks ties in score by this rank, so equal-priority work goes
    round-robin across customers: a customer with 10,000 orders gets its first
    order in beside the first order of a customer with 100, not all 10,000 first.
    """
    seen: dict[str, int] = {}
    ranks = []
    for customer in customer_ids:
        seen[customer] = seen.get(customer, 0) + 1
        ranks.append(seen[customer])
    return ranks
