"""Scenario E without overhead: its orders through an ideal greedy dispatcher, same caps.

``python -m bench.e_bound --latency 2 --orders 2000`` scores the orders scenario E
submits (``bench.batchline.submit_orders``: the sample orders with seed 11) as the
ledger does (``calculate_priority``, ties by ``fair_ranks``) and replays their writer
calls through a dispatcher with no overhead at all: whenever a call ends, the best
waiting order whose customer has a free slot starts at once. No preflight, QC,
delivery, feed, queue or commit; each call takes the latency ± the mock writer's
jitter (seeded). What is left is what the caps and strict priority order give: the
issue's "50 / 2 s = 25 orders/s" assumes every slot busy to the end, but near the
end only the lowest-scored customers have orders left, and each holds at most
``BATCH_CAP_PER_CUSTOMER`` slots.

It is a reference, not a ceiling: a schedule that starts the busiest customers'
low-scored orders sooner ends sooner (the shortest possible is about
``orders x latency / cap_global``, since no customer has more than a fifth of the
work), and the real feeder, which sends a surplus of orders to wait at the slots,
is not strictly ordered there either (bench/NOTES.md, "E's drain and the slots held around a call").
"""

from __future__ import annotations

import argparse
import heapq
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

from bench.submitter import ORDER_SEED


@dataclass(frozen=True)
class Bound:
    """The ideal run: when it ended and how many calls were in flight over time."""

    seconds: float
    orders: int
    #: (time, calls in flight from then on), one entry per change
    steps: list[tuple[float, int]]

    @property
    def orders_per_s(self) -> float:
        """Orders per second of the ideal run."""
        return self.orders / self.seconds

    def in_flight_mean(self, start: float, end: float) -> float:
        """Time-weighted mean of the calls in flight between ``start`` and ``end``."""
        total, edges = 0.0, [*self.steps, (self.seconds, 0)]
        for (at, count), (until, _) in pairwise(edges):
            total += count * max(0.0, min(until, end) - max(at, start))
        return total / max(end - start, 1e-9)


def ranked_customers(orders: int, seed: int = ORDER_SEED) -> list[str]:
    """E's orders' customers, best first, in the order the feeder hands them out."""
    from cli.sample_orders import load_catalog, sample_orders
    from pipeline.manifest import OrderDocument
    from pipeline.priority import calculate_priority, fair_ranks

    tiers = {c.customer_id: c.tier for c in load_catalog().customers}
    documents = [
        OrderDocument.model_validate(o) for o in sample_orders(orders, seed=seed, tag="bound")
    ]
    now = datetime.now(UTC)
    scores = [
        calculate_priority(d, tier=tiers.get(d.customer_id), waiting_since=now, now=now)
        for d in documents
    ]
    ranks = fair_ranks([d.customer_id for d in documents])
    best_first = sorted(range(len(documents)), key=lambda i: (-scores[i], ranks[i], i))
    return [documents[i].customer_id for i in best_first]


def ideal_run(
    customers: Sequence[str],
    *,
    latency_s: float,
    jitter: float = 0.2,
    cap_global: int = 50,
    cap_per_customer: int = 10,
    seed: int = 1,
) -> Bound:
    """Replay one writer call per order (``customers``: best first) through ideal dispatch."""
    rng = random.Random(seed)
    waiting = list(customers)
    running: list[tuple[float, str]] = []  # a heap of (end, customer)
    held: Counter[str] = Counter()
    now, steps = 0.0, []
    while waiting or running:
        index = 0
        while index < len(waiting) and len(running) < cap_global:
            customer = waiting[index]
            if held[customer] < cap_per_customer:
                held[customer] += 1
                end = now + latency_s * (1 + rng.uniform(-jitter, jitter))
                heapq.heappush(running, (end, customer))
                del waiting[index]
            else:
                index += 1
        steps.append((now, len(running)))
        now, customer = heapq.heappop(running)
        held[customer] -= 1
    return Bound(now, len(customers), steps)


def main(argv: Sequence[str] | None = None) -> None:
    """Print the ideal run's orders/s and its calls in flight over its last seconds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=2.0, help="writer latency, s")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--cap-global", type=int, default=50)
    parser.add_argument("--cap-per-customer", type=int, default=10)
    args = parser.parse_args(argv)
    bound = ideal_run(
        ranked_customers(args.orders),
        latency_s=args.latency,
        cap_global=args.cap_global,
        cap_per_customer=args.cap_per_customer,
    )
    flat = args.orders * args.latency / args.cap_global
    print(f"greedy, strict priority: {bound.seconds:.1f} s, {bound.orders_per_s:.2f} orders/s")
    print(f"every slot busy to the end: {flat:.1f} s, {args.orders / flat:.2f} orders/s")
    window = 5 * args.latency
    for start in range(int(bound.seconds - 4 * window), int(bound.seconds), int(window)):
        if start >= 0:
            mean = bound.in_flight_mean(start, start + window)
            print(f"  {start:5d}-{start + window:.0f} s: {mean:.1f} calls in flight")


if __name__ == "__main__":
    main()
