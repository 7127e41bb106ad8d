"""Reconcile concurrency slots with the ledger: the ledger says who really runs."""

from __future__ import annotations

import time

import redis

from ledger.db import transaction
from ledger.pool import active_states
from pipeline.settings import get_settings
from pipeline.states import STAGE_STATE
from tasks.chunk_runner import entry_states
from tasks.limits.semaphore import holders, reconcile, slot_keys
from tasks.slots import parse_holder

#: Slots taken this recently are kept whatever the ledger says: the feeder takes
#: slots a moment before it marks their items queued.
FRESH_SECONDS = 5.0


def reconcile_slots(client: redis.Redis) -> int:
    """Drop every slot whose item is neither queued nor leased in that stage; return how many.

    A worker that died keeps its slots until their lease runs out; this frees
    them at the next sweep instead (the item itself is re-sent once its item
    lease runs out). Slots lost with Redis need no repair: the next acquire
    counts only the holders that are there.
    """
    lease = get_settings().batch_lease_seconds
    fresh_after = time.time() + lease - min(FRESH_SECONDS, lease / 2)
    fresh: set[str] = set()
    item_ids: set[int] = set()
    for key in slot_keys(client):
        for holder, expires in holders(client, key).items():
            item_ids.add(parse_holder(holder)[0])
            if expires > fresh_after:
                fresh.add(holder)
    with transaction() as session:
        active = active_states(session, sorted(item_ids))

    def is_live(holder: str) -> bool:
        item_id, stage = parse_holder(holder)
        if holder in fresh:
            return True
        return stage in STAGE_STATE and active.get(item_id) in entry_states(stage)

    return reconcile(client, is_live)
