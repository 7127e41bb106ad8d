"""Publish fresh chunk messages for work the ledger says is waiting."""

from __future__ import annotations

from collections.abc import Sequence

from ledger.sweeps import WaitingWork
from pipeline.states import STAGE_FOR_STATE, ItemState
from tasks.dispatch import send_chunks


def redispatch(works: Sequence[WaitingWork]) -> int:
    """Send every waiting item to the stage that picks it up next; return how many.

    Safe to over-send: a claim is exclusive, so a duplicate message finds nothing
    to do.
    """
    sent = 0
    for work in works:
        send_chunks(
            STAGE_FOR_STATE[ItemState(work.state)],
            work.batch_id,
            work.item_ids,
            priority=work.priority,
            max_retries=work.max_retries,
        )
        sent += len(work.item_ids)
    return sent
