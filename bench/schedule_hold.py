"""What a held backlog costs the feeder: its pool scan with a shut window ahead of the work.

When a scheduled stage's window is shut, the feeder's scan (``ledger.pool.candidates``)
leaves that stage's pooled items out with a filter, so a backlog that outranks the
sendable work is walked past on every feed. This times the scan in one session:
``held`` orders in WRITING that outrank ``free`` pooled orders in PENDING, with
writing held (the window shut) against the same scan with nothing held (the
baseline). Both are medians of repeated runs; the ratio is what to read, the
milliseconds depend on the machine and its load.

    python -m bench.schedule_hold --held 20000 --free 2000

``--submit N`` also times what the index behind the per-state scan
(``ix_items_pool_state``) costs a submission: N orders submitted with and without
it, alternating, three times each, medians compared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.services import bench_services

LIMIT = 400  # what one feed reads at most (lane window 16 x the largest optimal chunk 25)


def _fill(held: int, free: int) -> None:
    from cli.sample_orders import sample_orders
    from ledger.db import transaction
    from tasks import submit_batch

    orders = sample_orders(held + free, tag="hold")
    submit_batch(orders, "bench", "normal", {"batch_id": "hold-bench"})
    with transaction() as session:
        # Every item back in the pool; the first `held` wait for writing and outrank the rest.
        session.execute(text("UPDATE items SET queued_at = NULL, lease_owner = NULL"))
        session.execute(
            text("UPDATE items SET state = 'WRITING', score = score + 1000 WHERE position < :held"),
            {"held": held},
        )


def _median_ms(held: list[str], runs: int) -> tuple[float, int]:
    from ledger.db import transaction
    from ledger.pool import candidates

    times, found = [], 0
    for _ in range(runs):
        with transaction() as session:
            started = time.perf_counter()
            found = len(candidates(session, "normal", LIMIT, held))
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), found


def _submit_seconds(orders: int, rounds: int = 3) -> tuple[float, float]:
    """Median seconds to submit ``orders`` orders with the index, and without it."""
    from cli.sample_orders import sample_orders
    from ledger.db import transaction
    from tasks import submit_batch

    create = (
        "CREATE INDEX ix_items_pool_state ON items (lane, state, score DESC, fair_rank, id)"
        " WHERE queued_at IS NULL AND lease_owner IS NULL"
        " AND state IN ('PENDING', 'PREFLIGHT', 'WRITING', 'QC', 'APPROVED')"
    )
    timings: dict[bool, list[float]] = {True: [], False: []}
    for n in range(rounds * 2):
        indexed = n % 2 == 0  # the migration created it; each round flips it for the next
        batch = sample_orders(orders, tag=f"submit{n}")
        started = time.perf_counter()
        submit_batch(batch, "bench", "low", {"batch_id": f"submit-bench-{n}"})
        timings[indexed].append(time.perf_counter() - started)
        with transaction() as session:
            session.execute(text("DROP INDEX ix_items_pool_state") if indexed else text(create))
    return statistics.median(timings[True]), statistics.median(timings[False])


_FILTERED = text(
    """
    SELECT i.id FROM items i JOIN batches b ON b.id = i.batch_id
    WHERE i.lane = 'normal' AND i.queued_at IS NULL AND i.lease_owner IS NULL
      AND i.state IN ('PENDING', 'PREFLIGHT', 'WRITING', 'QC', 'APPROVED')
      AND b.status = 'RUNNING' AND NOT (i.state = ANY(:held))
    ORDER BY i.score DESC, i.fair_rank, i.id LIMIT :limit
    """
)


def _median_filtered_ms(held: list[str], runs: int) -> float:
    """The rejected design: one ``ix_items_pool`` scan that filters held states out."""
    from ledger.db import transaction

    times = []
    for _ in range(runs):
        with transaction() as session:
            started = time.perf_counter()
            session.execute(_FILTERED, {"held": held, "limit": LIMIT}).all()
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    """Print the scan's median time with writing held and without, and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, default=20_000)
    parser.add_argument("--free", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--submit", type=int, default=0, help="Also time submissions of N.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch, bench_services(Path(scratch)):
        _fill(args.held, args.free)
        base, base_found = _median_ms([], args.runs)
        held, held_found = _median_ms(["WRITING"], args.runs)
        filtered = _median_filtered_ms(["WRITING"], args.runs)
        print(
            f"held={args.held} free={args.free}: nothing held {base:.2f} ms ({base_found} rows),"
            f" writing held {held:.2f} ms ({held_found} rows), ratio {held / base:.1f}x;"
            f" one filtered scan instead {filtered:.2f} ms, ratio {filtered / base:.1f}x"
        )
        if args.submit:
            with_index, without = _submit_seconds(args.submit)
            print(
                f"submit {args.submit}: with ix_items_pool_state {with_index:.2f} s,"
                f" without {without:.2f} s, ratio {with_index / without:.2f}x"
            )


if __name__ == "__main__":
    main()
