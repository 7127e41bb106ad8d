"""Where C's or D's time goes as the ledger grows: statement costs per run (``pg_stat_statements``).

``python -m bench.size_profile --scenario C --sizes 10000,100000`` runs the scenario (C
or D, default D) at each size in turn against one ledger (so later runs see the earlier
runs' history, as in ``make bench``) and, per run, prints the run's orders/s and the
statements that cost the most database time per order, with their mean time per call.
A statement whose mean grows from the smaller run to the larger one is what slows the
scenario down with size.

The embedded PostgreSQL is started with ``pg_stat_statements`` preloaded; with a
``DATABASE_URL`` of your own, preload it there.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

#: Statements shown per run.
TOP = 25

_STATEMENTS = """
SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 160) AS query, calls,
       total_exec_time, mean_exec_time, rows, shared_blks_hit + shared_blks_read AS blocks,
       shared_blks_read AS blocks_read, shared_blks_dirtied AS blocks_dirtied
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY total_exec_time DESC
LIMIT %s
"""


#: What the run did to ``items`` and its indexes: updates, HOT ones, dead versions, vacuums.
_TABLE = """
SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd, n_live_tup, n_dead_tup,
       autovacuum_count, autoanalyze_count,
       pg_relation_size('items') AS heap_bytes,
       pg_indexes_size('items') AS index_bytes,
       (SELECT heap_blks_read + idx_blks_read FROM pg_statio_user_tables
        WHERE relname = 'items') AS blocks_read,
       (SELECT heap_blks_hit + idx_blks_hit FROM pg_statio_user_tables
        WHERE relname = 'items') AS blocks_hit
FROM pg_stat_user_tables WHERE relname = 'items'
"""


def _table(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        cursor = connection.execute(_TABLE)
        names = [column.name for column in cursor.description or ()]
        row = cursor.fetchone()
        return {name: int(value or 0) for name, value in zip(names, row or (), strict=False)}


def _redis_commands() -> dict[str, dict[str, float]]:
    """``INFO commandstats`` of the bench's Redis since the last reset, costliest first."""
    from metrics.redis_client import redis_client

    raw: dict[str, dict[str, float]] = redis_client().info("commandstats")
    stats = {name.removeprefix("cmdstat_"): value for name, value in raw.items()}
    return dict(sorted(stats.items(), key=lambda kv: -float(kv[1].get("usec", 0)))[:TOP])


def _reset_redis() -> None:
    from metrics.redis_client import redis_client

    redis_client().config_resetstat()


def _preload_statements() -> None:
    # The embedded server reads its settings from this mapping when it starts.
    from cli import embedded

    embedded._POSTGRES_SETTINGS["shared_preload_libraries"] = "pg_stat_statements"
    embedded._POSTGRES_SETTINGS["pg_stat_statements.track"] = "all"


def _reset(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        connection.execute("SELECT pg_stat_statements_reset()")


def _statements(database_url: str) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        cursor = connection.execute(_STATEMENTS, (TOP,))
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _print_run(
    scenario: str, orders: int, items_per_s: float, statements: list[dict[str, Any]]
) -> None:
    print(f"\n=== {scenario} at {orders:,} orders: {items_per_s:.1f} orders/s", flush=True)
    print(
        f"{'ms/order':>9} {'calls':>8} {'mean ms':>8} {'rows/call':>9} {'blocks/call':>11}"
        f" {'read':>6}  query"
    )
    for row in statements:
        per_order = float(row["total_exec_time"]) / orders
        calls = max(int(row["calls"]), 1)
        print(
            f"{per_order:>9.3f} {int(row['calls']):>8} {float(row['mean_exec_time']):>8.3f}"
            f" {int(row['rows']) / calls:>9.1f} {int(row['blocks']) / calls:>11.1f}"
            f" {int(row['blocks_read']) / calls:>6.1f}"
            f"  {row['query']}",
            flush=True,
        )


def _print_profile(run: dict[str, Any]) -> None:
    orders = int(run["orders"])
    print(
        f"--- steady (10-90 %): {run['middle_items_per_s']} orders/s;"
        f" worker processes seen: {run['worker_processes_seen']}; per tenth:"
    )
    for part in run["slices"]:
        cores = " ".join(f"{name}={value:.2f}" for name, value in part["cores"].items())
        print(f"  {part['done']:>7} {part['items_per_s']:>8.1f}/s  cores: {cores}")
    table = {k: v - run["items_before"].get(k, 0) for k, v in run["items_after"].items()}
    print(f"--- items: {table}")
    usec = sum(float(value["usec"]) for value in run["redis"].values())
    print(f"--- redis, usec per order: total {usec / orders:.1f}")
    for name, value in list(run["redis"].items())[:10]:
        print(
            f"  {name:<16} calls/order {int(value['calls']) / orders:>6.2f}"
            f"  usec/call {float(value['usec_per_call']):>7.2f}",
            flush=True,
        )


def profile(
    sizes: Sequence[int], work_dir: Path, out: Path, scenario: str = "D"
) -> list[dict[str, Any]]:
    """Run ``scenario`` (C or D) at each of ``sizes`` against one ledger; return the costs."""
    _preload_statements()
    from bench.batchline import run_noop, run_real
    from bench.services import bench_services

    runs: list[dict[str, Any]] = []
    with bench_services(work_dir.resolve()) as bench:
        database_url = bench.env["DATABASE_URL"]
        for orders in sizes:
            _reset(database_url)
            _reset_redis()
            before = _table(database_url)
            run = (run_noop if scenario == "C" else run_real)(bench, orders)
            statements = _statements(database_url)
            _print_run(scenario, orders, run.items_per_s, statements)
            runs.append(
                {
                    "scenario": scenario,
                    "orders": orders,
                    "items_per_s": run.items_per_s,
                    "seconds": run.seconds,
                    "middle_items_per_s": run.extra["middle_items_per_s"],
                    "slices": run.extra["slices"],
                    "worker_processes_seen": run.extra["worker_processes_seen"],
                    "items_before": before,
                    "items_after": _table(database_url),
                    "redis": _redis_commands(),
                    "top": statements,
                }
            )
            _print_profile(runs[-1])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(runs, indent=1, default=str), encoding="utf-8")
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and profile."""
    parser = argparse.ArgumentParser(prog="python -m bench.size_profile", description=__doc__)
    parser.add_argument("--scenario", choices=("C", "D"), default="D")
    parser.add_argument("--sizes", default="1000,10000", help="orders per run, in order")
    parser.add_argument("--work-dir", type=Path, default=Path("var/bench/profile"))
    parser.add_argument("--out", type=Path, default=Path("var/bench/size-profile.json"))
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    profile(sizes, args.work_dir, args.out, args.scenario)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
