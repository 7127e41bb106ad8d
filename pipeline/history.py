"""What preflight knows besides the order: the catalog entries and the customer's recent orders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.catalog import CustomerProfile, PublisherProfile


@dataclass(frozen=True)
class PastOrder:
    """An earlier (or earlier-in-batch) order of the same customer that did not fail."""

    item_id: int
    customer_id: str
    target_url: str
    publisher_domain: str
    anchor_text: str
    topic: str
    created_at: datetime


@dataclass(frozen=True)
class PreflightRules:
    """Policy thresholds (from settings)."""

    anchor_window_days: int = 30
    exact_anchor_max_share: float = 0.3
    duplicate_window_days: int = 30


@dataclass(frozen=True)
class PreflightContext:
    """Everything preflight decides on, loaded by the shell in one go per chunk."""

    item_id: int
    customer: CustomerProfile | None
    publisher: PublisherProfile | None
    history: tuple[PastOrder, ...]
    now: datetime
    rules: PreflightRules = PreflightRules()
