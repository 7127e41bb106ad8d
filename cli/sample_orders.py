"""Realistic sample orders for the demo, built from the data shipped in ``sample_data/``.

``catalog.json`` is a catalog file as ``batchline catalog import`` reads it (the
customers and publishers); ``matches.json`` says, per customer, which pages of its
site it links to and which publishers, topics and anchors fit it. Only customers
with matches order, so the suspended customer in the catalog never does.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pipeline.catalog import Catalog

SAMPLE_DATA = Path(__file__).parent / "sample_data"
CATALOG = SAMPLE_DATA / "catalog.json"
MATCHES = SAMPLE_DATA / "matches.json"


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """Return the sample catalog (customers and publishers), validated."""
    return Catalog.model_validate_json(CATALOG.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def load_matches() -> dict[str, Any]:
    """Return customer id -> its site, pages and fitting publishers, topics and anchors."""
    matches: dict[str, Any] = json.loads(MATCHES.read_text(encoding="utf-8"))
    return matches


def _language_of(match: dict[str, Any]) -> str:
    if "language" in match:
        return str(match["language"])
    publisher = next(p for p in load_catalog().publishers if p.domain == match["publisher"])
    return publisher.languages[0]


def _tier_of(customer_id: str) -> str:
    return next(str(c.tier) for c in load_catalog().customers if c.customer_id == customer_id)


def _target_url(site: str, page: str, publisher: str, order_id: str) -> str:
    # Tracking parameters per order, as agencies tag their links: they also keep
    # every sample order distinct, so none is refused as a repeat of another.
    query = {"utm_source": publisher, "utm_medium": "referral", "utm_campaign": order_id}
    return f"{site}{page}?{urlencode(query)}"


def _order(rng: random.Random, number: int, tag: str) -> dict[str, Any]:
    matches = load_matches()
    customer_id = rng.choice(sorted(matches))
    customer = matches[customer_id]
    match = rng.choice(customer["matches"])
    page = rng.choice(customer["pages"])
    deadline = datetime.now(UTC) + timedelta(hours=rng.choice([12, 48, 120, 240]))
    order_id = f"{tag}-{number:06d}"
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "target_url": _target_url(customer["site"], page, match["publisher"], order_id),
        "anchor_text": rng.choice(match["anchors"]),
        "publisher_domain": match["publisher"],
        "language": _language_of(match),
        "topic": match["topic"],
        "deadline": deadline.isoformat(),
        "metadata": {"campaign": f"demo-{_tier_of(customer_id)}"},
    }


def sample_orders(count: int, *, seed: int = 7, tag: str = "demo") -> list[dict[str, Any]]:
    """Return ``count`` orders, the same ones for the same ``seed`` (deadlines move with now)."""
    rng = random.Random(seed)
    return [_order(rng, number, tag) for number in range(1, count + 1)]


def _fixed(tag: str, suffix: str, **fields: str) -> dict[str, Any]:
    order: dict[str, Any] = {
        "order_id": f"{tag}-fail-{suffix}",
        "metadata": {"built_to_fail": suffix},
    }
    order.update(fields)
    return order


def orders_built_to_fail(tag: str) -> list[dict[str, Any]]:
    """Orders the demo adds so that every refusal shows once, with its error class.

    The run ``tag`` is part of each target URL, so a later demo run against the same
    ledger does not see these as repeats of this one.
    """
    python = f"https://codeforge.academy/courses/python?campaign={tag}"
    tents = f"https://www.acme-outdoor.com/tents?campaign={tag}"
    en = {"language": "en"}
    return [
        # CustomerSuspended: the catalog suspends this customer.
        _fixed(
            tag,
            "suspended",
            customer_id="quickcash-credit",
            target_url=f"https://quickcash.example/loans?c={tag}",
            anchor_text="QuickCash",
            publisher_domain="petlovers.blog",
            topic="pets",
            **en,
        ),
        # DuplicateOrder: the same customer, target and publisher twice; the later one fails.
        _fixed(
            tag,
            "dup-first",
            customer_id="acme-outdoor",
            target_url=tents,
            anchor_text="Acme Outdoor",
            publisher_domain="outdoorjournal.com",
            topic="camping",
            **en,
        ),
        _fixed(
            tag,
            "dup-again",
            customer_id="acme-outdoor",
            target_url=tents,
            anchor_text="Acme Outdoor",
            publisher_domain="outdoorjournal.com",
            topic="camping",
            **en,
        ),
        # PolicyViolation: a third exact-match anchor for one target breaks the anchor profile.
        *(
            _fixed(
                tag,
                f"exact-{n}",
                customer_id="codeforge",
                target_url=python,
                anchor_text="python courses",
                publisher_domain=domain,
                topic="python courses",
                **en,
            )
            for n, domain in enumerate(
                ("techweekly.net", "scandinavian-living.com", "healthyliving.co.uk"), 1
            )
        ),
        # InvalidInput: the publisher does not take German.
        _fixed(
            tag,
            "language",
            customer_id="petpal",
            target_url=f"https://petpal.shop/?c={tag}",
            anchor_text="PetPal",
            publisher_domain="petlovers.blog",
            topic="hunde",
            language="de",
        ),
        # PolicyViolation: the publisher refuses the topic.
        _fixed(
            tag,
            "topic",
            customer_id="acme-outdoor",
            target_url=f"https://www.acme-outdoor.com/?c={tag}",
            anchor_text="Acme Outdoor",
            publisher_domain="outdoorjournal.com",
            topic="gambling",
            **en,
        ),
        # QualityRejected after rewrites: no article fits the microblog's 15-30 words.
        _fixed(
            tag,
            "length",
            customer_id="codeforge",
            target_url=f"https://codeforge.academy/bootcamp?c={tag}",
            anchor_text="CodeForge",
            publisher_domain="microposts.io",
            topic="programming",
            **en,
        ),
    ]
