"""A ledger and Redis database of a test's own, and a known state planted in them.

The exporter and collector tests read system-wide figures (every lane, every
batch), so they cannot share the session's ledger, where other tests' batches come
and go. :func:`own_ledger` makes a fresh, migrated database on the session's
PostgreSQL server; :func:`plant_known_state` fills it (and a Redis database) with
batches, items, stage outputs, queued messages, held slots and a rate bucket whose
every count is written down in :data:`KNOWN` for the tests to assert.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import redis
from sqlalchemy import Engine, create_engine, text

from pipeline.settings import sqlalchemy_url
from tests.conftest import _drop_database, _fresh_database


@contextmanager
def own_ledger(service_env: dict[str, str]) -> Iterator[tuple[str, Engine]]:
    """A fresh migrated ledger database: its URL and an engine, dropped in ``finally``."""
    from ledger.migrate import upgrade

    url, name = _fresh_database(service_env["DATABASE_URL"])
    engine = create_engine(sqlalchemy_url(url))
    try:
        upgrade(sqlalchemy_url(url))
        yield url, engine
    finally:
        engine.dispose()
        _drop_database(service_env["DATABASE_URL"], name)


#: What :func:`plant_known_state` planted, as the exporter must report it.
KNOWN: Final[dict[str, Any]] = {
    "batches": {"RUNNING": 2, "PAUSED": 1, "COMPLETED": 1},
    # items of unfinished batches only: the COMPLETED batch's 5 DELIVERED are history
    "items": {"PENDING": 5, "WRITING": 2, "QC": 1, "APPROVED": 2, "FAILED": 1},
    "pool": {
        ("high", "preflight"): 3,
        ("high", "writing"): 2,
        ("normal", "preflight"): 1,
        ("low", "delivery"): 2,
    },
    # seconds since the oldest pooled item of each lane returned to the pool
    "oldest": {"high": 120, "normal": 10, "low": 600},
    "lane_messages": {"high": 3, "normal": 0, "low": 3},
    "slots": {"global": 3, "customer": 2, "publisher": 1},
    "caps": {"global": 7, "customer": 4, "publisher": 2},
    "running_idle_seconds": 300,
    "writer_tokens": 5.0,
    "rate_limits": "writer=60/min:20,preflight=100/min:20",
    # stage runs: 5 preflight of 20 ms and one failed of 7 ms, 5 writing of 3 s
    "stage_counts": {"preflight": 6, "writing": 5},
    "stage_sums": {"preflight": 0.107, "writing": 15.0},
    "errors": {("PERMANENT", "QualityRejected"): 1},
    # two notifications unsent (the oldest recorded 900 s ago), one sent long before
    "notifications_unsent": 2,
    "oldest_unsent_seconds": 900,
}

_NOTIFICATIONS = text(
    """
    INSERT INTO idempotency_keys (key, scope, result, created_at, expires_at)
    VALUES ('notify:k1', 'notify', '{"kind": "progress_25", "sent_at": null}',
            now() - interval '900 seconds', now() + interval '30 days'),
           ('notify:k2', 'notify', '{"kind": "finalized", "sent_at": null}',
            now() - interval '60 seconds', now() + interval '30 days'),
           ('notify:k3', 'notify', '{"kind": "progress_50", "sent_at": "2026-01-01T00:00:00Z"}',
            now() - interval '3000 seconds', now() + interval '30 days')
    """
)

_BATCHES = text(
    """
    INSERT INTO batches (id, project_uuid, priority, status, options, manifest_sha256,
                         total_items, created_at, finalized_at)
    VALUES ('k-high', 'p', 'high', 'RUNNING', '{}', '', 8, now() - interval '1 hour', NULL),
           ('k-low', 'p', 'low', 'RUNNING', '{}', '', 2, now() - interval '1 hour', NULL),
           ('k-paused', 'p', 'normal', 'PAUSED', '{}', '', 1, now() - interval '1 hour', NULL),
           ('k-done', 'p', 'normal', 'COMPLETED', '{}', '', 5,
            now() - interval '2 hours', now() - interval '1 hour')
    """
)

# (batch, lane, state, seconds since updated, queued, leased, error class)
_ITEMS: Final = [
    *[("k-high", "high", "PENDING", 120, False, False, None)] * 3,
    ("k-high", "high", "PENDING", 30, True, False, None),
    *[("k-high", "high", "WRITING", 60, False, False, None)] * 2,
    ("k-high", "high", "QC", 5, False, True, None),
    ("k-high", "high", "FAILED", 50, False, False, "QualityRejected"),
    *[("k-low", "low", "APPROVED", 600, False, False, None)] * 2,
    ("k-paused", "normal", "PENDING", 10, False, False, None),
    *[("k-done", "normal", "DELIVERED", 3600, False, False, None)] * 5,
]

_ITEM = text(
    """
    INSERT INTO items (batch_id, position, order_id, customer_id, publisher_domain,
                       state, lane, attempts, error_class, queued_at, lease_owner,
                       lease_expires_at, created_at, updated_at)
    VALUES (:batch, :position, :order_id, 'c1', 'p.example', :state, :lane, 0,
            :error_class, CASE WHEN :queued THEN now() END,
            CASE WHEN :leased THEN 'test@worker' END,
            CASE WHEN :leased THEN now() + interval '10 minutes' END,
            now() - interval '2 hours', now() - make_interval(secs => :age))
    RETURNING id
    """
)

_OUTPUT = text(
    """
    INSERT INTO stage_outputs (item_id, stage, attempt, ok, output, duration_ms,
                               started_at, finished_at, publisher_domain)
    VALUES (:item_id, :stage, 1, :ok, CAST(:output AS jsonb), :ms,
            now() - make_interval(secs => :start), now() - make_interval(secs => :finish),
            'p.example')
    """
)

_FAILED_OUTPUT: Final = (
    '{"error": "too short", "category": "PERMANENT", "code": "word_count", "attempts": 2}'
)


def plant_known_state(engine: Engine, client: redis.Redis) -> None:
    """Write :data:`KNOWN`'s batches, items, outputs, halt, notifications and Redis state."""
    with engine.begin() as connection:
        connection.execute(_BATCHES)
        ids: dict[str, list[int]] = {}
        for position, (batch, lane, state, age, queued, leased, error) in enumerate(_ITEMS):
            values = {"batch": batch, "position": position, "order_id": f"{batch}-{position}"}
            values |= {"state": state, "lane": lane, "error_class": error, "age": age}
            values |= {"queued": queued, "leased": leased}
            item_id = connection.execute(_ITEM, values).scalar_one()
            ids.setdefault(state, []).append(item_id)
        for number, item_id in enumerate(ids["DELIVERED"]):
            start = 3000 - number * 10
            connection.execute(
                _OUTPUT, _run(item_id, "preflight", True, "{}", 20.0, start, start - 1)
            )
            connection.execute(
                _OUTPUT, _run(item_id, "writing", True, "{}", 3000.0, start - 2, start - 5)
            )
        failed = _run(ids["FAILED"][0], "preflight", False, _FAILED_OUTPUT, 7.0, 100, 99)
        connection.execute(_OUTPUT, failed)
        connection.execute(
            text("INSERT INTO controls (name, reason, data) VALUES ('halt', 'planted', '{}')")
        )
        connection.execute(_NOTIFICATIONS)
    _plant_redis(client)


def _run(
    item_id: int, stage: str, ok: bool, output: str, ms: float, start: int, finish: int
) -> dict[str, Any]:
    return {
        "item_id": item_id, "stage": stage, "ok": ok, "output": output, "ms": ms,
        "start": start, "finish": finish,
    }  # fmt: skip


def _plant_redis(client: redis.Redis) -> None:
    from metrics.keys import progress_key, rate_bucket_key, slot_key

    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros / 1000
    live, gone = now_ms + 600_000, now_ms - 1_000
    pipe = client.pipeline(transaction=False)
    pipe.rpush("batch.high", "m1", "m2", "m3")
    pipe.rpush("batch.low", "m1")
    pipe.rpush("batch.low\x06\x163", "m2", "m3")  # kombu's priority sibling list
    pipe.zadd(slot_key("global"), {"1:writing": live, "2:writing": live, "3:qc": live})
    pipe.zadd(slot_key("global"), {"4:writing": gone})  # an expired lease: not in use
    pipe.zadd(slot_key("customer", "c1"), {"1:writing": live, "2:writing": live})
    pipe.zadd(slot_key("customer", "c2"), {"3:qc": live})
    pipe.zadd(slot_key("publisher", "p.example"), {"1:writing": live})
    pipe.hset(progress_key("k-high"), mapping={"total": 8, "updated_at": time.time() - 300})
    pipe.hset(progress_key("k-low"), mapping={"total": 2, "updated_at": time.time() - 30})
    pipe.hset(rate_bucket_key("writer"), mapping={"tokens": 5, "ts": f"{now_ms:.3f}"})
    pipe.execute()
