"""What warming a batch's caches loads: a plan drawn from its orders (pure).

Preflight reads, per chunk, the customers' profiles, the publishers' profiles and
the customers' recent orders of the chunk's target pages. The plan names all of
the batch's customers and publishers (few, whatever the batch's size) and the
customers and targets of its first orders, whose history the first chunks read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

#: Orders whose history a warm prefetches: the first chunks' (50 preflight chunks of 10).
#: Later chunks read theirs while earlier ones run, so prefetching them buys nothing.
HISTORY_ORDERS: Final = 500


@dataclass(frozen=True)
class WarmPlan:
    """The keys a warm loads; JSON-safe through :meth:`to_json` for the warm task."""

    #: every customer of the batch (profiles)
    customers: tuple[str, ...]
    #: every publisher domain of the batch (profiles)
    domains: tuple[str, ...]
    #: customers of the first orders (history)
    history_customers: tuple[str, ...]
    #: target pages of the first orders (history)
    history_targets: tuple[str, ...]

    def to_json(self) -> dict[str, list[str]]:
        """The plan as a task argument (lists of strings)."""
        return {name: list(getattr(self, name)) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[str]]) -> WarmPlan:
        """The plan :meth:`to_json` gave."""
        return cls(**{name: tuple(data.get(name, ())) for name in cls.__dataclass_fields__})


def plan_warming(
    documents: Sequence[Mapping[str, Any]], *, history_orders: int = HISTORY_ORDERS
) -> WarmPlan:
    """The plan for a batch of orders (``OrderDocument`` JSON), in first-seen order.

    Args:
        documents: the batch's orders, in manifest order.
        history_orders: how many of the first orders' history to prefetch.
    """
    first = documents[:history_orders]
    return WarmPlan(
        customers=_distinct(documents, "customer_id"),
        domains=tuple(dict.fromkeys(d.lower() for d in _distinct(documents, "publisher_domain"))),
        history_customers=_distinct(first, "customer_id"),
        history_targets=_distinct(first, "target_url"),
    )


def _distinct(documents: Sequence[Mapping[str, Any]], field: str) -> tuple[str, ...]:
    values = (str(document.get(field) or "") for document in documents)
    return tuple(value for value in dict.fromkeys(values) if value)
