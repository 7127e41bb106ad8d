"""What preflight knows besides the order: the catalog entries and the customer's recent orders."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pipeline.catalog import CustomerProfile, PublisherProfile

if TYPE_CHECKING:
    from pipeline.settings import Settings


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
    #: Where the order came from, so a refusal can name it; empty when not known.
    batch_id: str = ""
    order_id: str = ""

    def describe(self) -> str:
        """Name the order for an error message (order and batch when known, else the item)."""
        if self.order_id:
            return f"order {self.order_id} of batch {self.batch_id} (item {self.item_id})"
        return f"item {self.item_id}"


@dataclass(frozen=True)
class PreflightRules:
    """Policy thresholds (from settings)."""

    anchor_window_days: int = 30
    exact_anchor_max_share: float = 0.3
    duplicate_window_days: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> PreflightRules:
        """Read the thresholds from ``BATCH_ANCHOR_WINDOW_DAYS`` and its neighbours."""
        return cls(
            anchor_window_days=settings.batch_anchor_window_days,
            exact_anchor_max_share=settings.batch_exact_anchor_max_share,
            duplicate_window_days=settings.batch_duplicate_window_days,
        )


@dataclass(frozen=True)
class PreflightContext:
    """Everything preflight decides on, loaded by the shell in one go per chunk."""

    item_id: int
    customer: CustomerProfile | None
    publisher: PublisherProfile | None
    history: tuple[PastOrder, ...]
    now: datetime
    rules: PreflightRules = PreflightRules()

    def earlier_orders(
        self, *, customer_id: str, target_url: str, window_days: int
    ) -> tuple[PastOrder, ...]:
        """Return the customer's orders for ``target_url`` placed before this one.

        "Before" means a smaller item id, created at most ``window_days`` before
        ``now``. Item ids come from one sequence, so of two orders in the same batch
        the later one sees the earlier one and not the other way round. There is no
        upper bound on ``created_at``: a clock a little behind the database's must
        not hide an order that was stored first. This order itself is never included.
        """
        since = self.now - timedelta(days=window_days)
        earlier = (
            past
            for past in self.history
            if past.item_id < self.item_id
            and past.customer_id == customer_id
            and past.target_url == target_url
            and past.created_at >= since
        )
        return tuple(sorted(earlier, key=lambda past: past.item_id))
