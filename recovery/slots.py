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

    def is_live(holder: str) -> bool:
        item_id, stage = parse_holder(holder)
        return stage in STAGE_NAMES and active.get(item_id) in stage_named(stage).entry_states

    return reconcile(client, is_live)
