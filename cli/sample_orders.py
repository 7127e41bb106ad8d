"""Realistic sample orders for the demo, built from the catalog shipped in ``sample_data/``."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG = Path(__file__).parent / "sample_data" / "catalog.json"


@lru_cache(maxsize=1)
def load_catalog() -> dict[str, Any]:
    """Return the sample catalog (customers, publishers and who fits where)."""
    catalog: dict[str, Any] = json.loads(CATALOG.read_text(encoding="utf-8"))
    return catalog


def _language_of(domain: str) -> str:
    publishers = load_catalog()["publishers"]
    return str(next(p["language"] for p in publishers if p["domain"] == domain))


def _order(rng: random.Random, number: int, tag: str) -> dict[str, Any]:
    catalog = load_catalog()
    customer = rng.choice(catalog["customers"])
    match = rng.choice(catalog["matches"][customer["customer_id"]])
    deadline = datetime.now(UTC) + timedelta(hours=rng.choice([12, 48, 120, 240]))
    return {
        "order_id": f"{tag}-{number:06d}",
        "customer_id": customer["customer_id"],
        "target_url": customer["site"] + rng.choice(customer["pages"]),
        "anchor_text": rng.choice(match["anchors"]),
        "publisher_domain": match["publisher"],
        "language": _language_of(match["publisher"]),
        "topic": match["topic"],
        "deadline": deadline.isoformat(),
        "metadata": {"campaign": f"demo-{customer['tier']}"},
    }


def sample_orders(count: int, *, seed: int = 7, tag: str = "demo") -> list[dict[str, Any]]:
    """Return ``count`` orders, the same ones for the same ``seed`` (deadlines move with now)."""
    rng = random.Random(seed)
    return [_order(rng, number, tag) for number in range(1, count + 1)]
