"""What one scenario E run is: the writer's latency, the orders, the services' behaviour.

Kept apart from :mod:`bench.realistic` (which imports the app, the ledger and
Redis) so ``bench.run`` can check its options before any server is up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: ``--e-runs`` by default: 2,000 orders at 2 s and at 10 s (issue 15's targets).
DEFAULT_RUNS = "2:2000,10:2000"


@dataclass(frozen=True)
class RealisticRun:
    """One E run: the writer's mean latency and how many orders."""

    latency_s: float
    orders: int


@dataclass(frozen=True)
class RealisticOptions:
    """What the services do and which settings differ from the defaults.

    Attributes:
        webhook_latency_s: the publisher's answer time.
        unavailable_rate: share of first requests the publisher refuses with 503.
        jitter: the writer's latency varies uniformly by ± this share.
        env: extra settings for the workers and the submitter (``BATCH_CAP_GLOBAL=8``).
    """

    webhook_latency_s: float = 0.2
    unavailable_rate: float = 0.02
    jitter: float = 0.2
    env: dict[str, str] = field(default_factory=dict)


def parse_runs(text: str) -> list[RealisticRun]:
    """``"2:2000,10:500"`` -> runs at 2 s with 2,000 orders and at 10 s with 500.

    Raises:
        ValueError: an entry is not ``LATENCY_S:ORDERS`` with both positive.
    """
    runs = []
    for entry in (part.strip() for part in text.split(",") if part.strip()):
        latency, colon, orders = entry.partition(":")
        try:
            run = RealisticRun(float(latency), int(orders.replace("_", "")))
        except ValueError:
            run = None
        if not colon or run is None or run.latency_s <= 0 or run.orders < 1:
            raise ValueError(f"expected LATENCY_S:ORDERS (e.g. 2:2000), got {entry!r}")
        runs.append(run)
    if not runs:
        raise ValueError("name at least one LATENCY_S:ORDERS")
    return runs


def parse_env(values: list[str]) -> dict[str, str]:
    """``["BATCH_CAP_GLOBAL=8", ...]`` -> ``{"BATCH_CAP_GLOBAL": "8", ...}``.

    Raises:
        ValueError: an entry has no ``=`` or an empty name.
    """
    env = {}
    for value in values:
        name, equals, setting = value.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"expected NAME=VALUE, got {value!r}")
        env[name.strip()] = setting
    return env
