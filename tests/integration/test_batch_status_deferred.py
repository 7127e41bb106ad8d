"""``batch_status`` says how many orders wait out a retry or a rate limit, and until when."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text

from bench.monitor_frame import add_paused_batches, remove_batches
from ledger.db import transaction
from ledger.items import defer_items


def test_deferred_orders_show_in_the_status_with_their_end(service_env: dict[str, str]) -> None:
    from tasks.status import batch_status

    # Paused, so no worker touches its orders; removed in finally.
    tag = f"defer-{uuid.uuid4().hex[:6]}"
    batch_id = f"{tag}-1"
    try:
        # Given a batch of three orders (one delivered) of which a chunk held two
        add_paused_batches(tag, 1, orders=3)
        with transaction() as session:
            held = list(
                session.scalars(
                    text(
                        "UPDATE items SET lease_owner = 'task-1@w', lease_expires_at = now()"
                        " + interval '1 minute' WHERE batch_id = :b AND state = 'PENDING'"
                        " RETURNING id"
                    ),
                    {"b": batch_id},
                )
            )
        before = batch_status(batch_id)["deferred"]

        # When the chunk defers them for ten minutes (a backoff or a rate limit)
        with transaction() as session:
            defer_items(session, held, owner="task-1@w", hold_seconds=600, refund_attempt=True)
        status = batch_status(batch_id)

        # Then the status counts them and says until when they wait
        assert before == {"orders": 0, "until": None}
        assert status["deferred"]["orders"] == 2
        until = datetime.fromisoformat(status["deferred"]["until"])
        assert 500 < (until - datetime.fromisoformat(status["created_at"])).total_seconds() < 700
        assert status["in_stage"]["preflight"] == 2
        assert (status["remaining"], status["completed"]) == (2, 1)
    finally:
        remove_batches(tag)
