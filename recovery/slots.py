"""Reconcile concurrency slots with the ledger: the ledger says who really runs."""

from __future__ import annotations

import redis

from ledger.db import transaction
from ledger.pool import active_states
from pipeline.stage_registry import STAGE_NAMES, stage_named
from tasks.limits.semaphore import holders, reconcile, slot_keys
from tasks.slots import parse_holder


def reconcile_slots(client: redis.Redis) -> int:
    """Drop every slot whose item no longer runs that stage; return how many.

    That is a slot whose chunk committed but died before giving it back, whose
    item was cancelled, or whose item's lease ran out (its worker died): the
    acquire's own expiry would free these only when the slot's lease ends.
    Slots lost with Redis need no repair: an acquire counts only the holders there.
    """
    item_ids = {
        parse_holder(holder)[0] for key in slot_keys(client) for holder in holders(client, key)
    }
    with transaction() as session:
        active = active_states(session, sorted(item_ids))
    return reconcile(client, lambda holder: holder_is_live(holder, item_ids, active))


def holder_is_live(holder: str, asked: set[int], active: dict[int, str]) -> bool:
    """Whether ``holder`` may keep its slot, given the ledger's ``active`` states of ``asked``.

    ``reconcile`` reads the holders again after the ledger was asked: a holder that
    took its slot in between (an item that moved on to this stage meanwhile) was not
    asked about, and its absence from ``active`` says nothing. It keeps its slot; the
    next sweep judges it. Removing it freed a slot under a running call, and another
    item took it: more calls at once than the cap.
    """
    item_id, stage = parse_holder(holder)
    if item_id not in asked:
        return True
    return stage in STAGE_NAMES and active.get(item_id) in stage_named(stage).entry_states
