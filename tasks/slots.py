"""Concurrency caps of batchline's stages, on top of the leased Redis semaphores.

An item of a stage in ``BATCH_CAPPED_STAGES`` (by default writing: the LLM
service is the shared resource the caps protect) holds, during its call, a
``global`` slot (``BATCH_CAP_GLOBAL``) and one of its customer's
(``BATCH_CAP_PER_CUSTOMER``); one of ``BATCH_PUBLISHER_CAPPED_STAGES`` (delivery:
the publisher's site takes the load) holds one of its publisher domain's
(``BATCH_CAP_PER_PUBLISHER``). The feeder only sends what fits in the free slots;
an item takes its slots just before its call and gives them back right after. A
holder that dies loses its slots with its lease; the sweeper reconciles them with
the ledger sooner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import redis

from metrics.keys import slot_key
from pipeline.settings import get_settings
from pipeline.stage_registry import stage_named
from tasks.limits.semaphore import SlotClaim, acquire, occupancy, release
from tasks.slot_order import waiter_sets


@dataclass(frozen=True)
class SlotUser:
    """Who needs slots: an item in a stage, with the scopes its caps apply to."""

    item_id: int
    stage: str
    customer_id: str
    publisher_domain: str
    #: the item's ``(score, fair_rank)`` (the feeder's order): its place among waiters
    rank: tuple[float, int] = (0.0, 0)


def holder_name(item_id: int, stage: str) -> str:
    """The semaphore member of an item in a stage: ``<item_id>:<stage>``."""
    return f"{item_id}:{stage}"


def parse_holder(holder: str) -> tuple[int, str]:
    """``(item_id, stage)`` of a semaphore member."""
    item_id, _, stage = holder.partition(":")
    return int(item_id), stage


def _limits(stage: str) -> tuple[int, int, int]:
    settings = get_settings()
    general = stage in settings.capped_stages()
    return (
        settings.batch_cap_global if general else 0,
        settings.batch_cap_per_customer if general else 0,
        settings.batch_cap_per_publisher if stage in settings.publisher_capped_stages() else 0,
    )


def is_capped(stage: str) -> bool:
    """Whether items of ``stage`` need any slot."""
    return any(limit > 0 for limit in _limits(stage))


def slot_claim(user: SlotUser) -> SlotClaim:
    """The semaphores ``user`` needs, with their capacities (0 = no cap in that scope)."""
    return SlotClaim(
        holder=holder_name(user.item_id, user.stage),
        keys=(
            slot_key("global"),
            slot_key("customer", user.customer_id),
            slot_key("publisher", user.publisher_domain),
        ),
        limits=_limits(user.stage),
    )


def take_slots(
    client: redis.Redis, users: Sequence[SlotUser], blockers: Sequence[str] = ()
) -> list[bool]:
    """Try to take slots for ``users`` in order; one bool each (uncapped stages: True).

    ``blockers``: waiter sets of higher lanes (``tasks.slot_order.blockers``); a
    user needing a semaphore one of their live waiters waits for gets none.
    """
    capped = [(index, user) for index, user in enumerate(users) if is_capped(user.stage)]
    granted = [True] * len(users)
    if not capped:
        return granted
    lease = get_settings().batch_lease_seconds
    answers = acquire(client, [slot_claim(user) for _, user in capped], lease, blockers)
    for (index, _), answer in zip(capped, answers, strict=True):
        granted[index] = answer
    return granted


def promised(queued: Iterable[tuple[SlotUser, int]]) -> dict[str, int]:
    """Slots per semaphore key that ``queued`` work (a user and its item count) will ask for."""
    counts: dict[str, int] = {}
    for user, count in queued:
        for key in slot_claim(user).capped():
            counts[key] = counts.get(key, 0) + count
    return counts


def admissible(
    client: redis.Redis, users: Sequence[SlotUser], on_its_way: Mapping[str, int] | None = None
) -> list[bool]:
    """Which of ``users`` (in order) fit in the slots free right now, without taking any.

    The feeder asks this; the chunk's claim then takes the slots. Queued work holds
    no slot, so low work waiting in its queue never keeps a slot from high work
    (which is consumed first); what no longer fits at claim time goes back to the pool.
    ``on_its_way``: slots per key that work already sent (of this lane or a higher
    one, :func:`promised`) will ask for; they count as used, so a feed does not send
    work again for slots queued work will take, and the surplus stays
    ``BATCH_FEED_SURPLUS`` of the cap instead of growing by that much with every feed.
    """
    surplus = get_settings().batch_feed_surplus
    capped = [(index, slot_claim(user), user) for index, user in enumerate(users)]
    capped = [(index, claim, user) for index, claim, user in capped if claim.capped()]
    keys = sorted({key for _, claim, _ in capped for key in claim.capped()})
    used = occupancy(client, keys) if keys else {}
    for key, count in (on_its_way or {}).items():
        used[key] = used.get(key, 0) + count
    fits = [True] * len(users)
    for index, claim, user in capped:
        caps = claim.capped()
        extra = surplus if stage_named(user.stage).io_bound else 0.0
        if all(used.get(key, 0) < limit * (1 + extra) for key, limit in caps.items()):
            for key in caps:
                used[key] = used.get(key, 0) + 1
        else:
            fits[index] = False
    return fits


def give_back(client: redis.Redis, users: Sequence[SlotUser]) -> list[str]:
    """Release the slots of ``users`` (those of uncapped stages hold none).

    Each freed slot goes straight to the best-ranked item waiting for it
    (``tasks.slot_order``); returns the holders it went to.
    """
    claims = [slot_claim(user) for user in users if is_capped(user.stage)]
    return release(client, claims, waiter_sets()) if claims else []
