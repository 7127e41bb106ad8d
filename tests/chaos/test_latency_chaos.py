"""Latency-bound chaos: slow writer, slow publisher, the I/O worker killed and chunks out of time.

The workers are a prefork worker for the CPU queues and one threads-pool worker
for the lanes' I/O queues (``batchline worker``'s kinds, with one I/O process), so every
writing and delivery chunk runs its items' calls concurrently in that one
process. The writer is a real OpenAI-compatible HTTP server (the bench's
:class:`~bench.mock_services.MockWriter`) answering in ``latency ± 50 %``, and
every ``SLOW_EVERY``-th call only after ``SLOW_BEYOND_SOFT_LIMIT_S`` more than the chunk's
soft time limit: that chunk's own deadline ends it mid-call. The publisher is a
real webhook (:class:`~bench.mock_services.MockPublisher`) that answers slowly,
now and then with 503 + ``Retry-After``, and counts effective publishes per
order by ``Idempotency-Key``. While many calls are in flight the I/O worker is
SIGKILLed (every chunk it runs dies mid-call) and started again.

Then every order is DELIVERED, published exactly once (the publisher's own
count) with one receipt in the ledger, the batch is finalized once, the ledger's
spans never exceed a cap, and the writer's own log never shows more calls in
flight than the global cap.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bench.inflight import in_flight, peak_in_flight
from bench.mock_services import MockPublisher, MockWriter
from pipeline.audit import max_overlap, max_overlap_by
from tests.chaos.conftest import ChaosScale, ChaosStack, running_chaos_stack
from tests.integration.helpers import (
    finalize_events,
    item_states,
    make_orders,
    output_spans,
    receipts_per_item,
    wait_for_final,
    wait_until,
)
from tests.integration.progress_checks import progress_mismatches

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(2400)]

#: Low enough that the writing calls of 16 concurrent chunks fill it.
CAP_GLOBAL = 24
CAP_PER_CUSTOMER = 10
CAP_PER_PUBLISHER = 5
#: A slow call takes this much longer than the scale's soft limit (the chunk's deadline
#: strikes mid-call) and is still shorter than the writer's HTTP timeout (the deadline,
#: not the client, cuts it): a call a killed worker left open has ended before its
#: lease (soft limit + timeout, at least) runs out. Soft limit and timeout: 8 and 12 s
#: at full scale, 4 and 6 s at small.
SLOW_BEYOND_SOFT_LIMIT_S = 1.5
SLOW_EVERY = 40
JITTER = 0.5
WEBHOOK_LATENCY_S = 0.8


@dataclass(frozen=True)
class LatencyScale:
    """How hard the latency-bound run pushes at one chaos scale."""

    orders: int
    writer_latency_s: float
    io_worker_kills: int


LATENCY_SCALES = {"small": LatencyScale(80, 0.5, 1), "full": LatencyScale(2000, 2.0, 5)}


@dataclass
class LatencyStack:
    """The chaos stack with the slow services its workers call."""

    stack: ChaosStack
    writer: MockWriter
    publisher: MockPublisher
    scale: LatencyScale
    #: the chunks' soft time limit, and how long the writer's slow calls take
    soft_limit_s: float
    slow_s: float


def _point_publishers_at(url: str) -> None:
    """Every sample publisher's ``webhook_url`` becomes ``url`` (a fresh ledger: no restore)."""
    from cli.sample_orders import load_catalog
    from ledger.catalog import upsert_catalog
    from ledger.db import transaction
    from pipeline.catalog import Catalog, PublisherProfile

    pointed = tuple(
        PublisherProfile.model_validate({**p.model_dump(mode="json"), "webhook_url": url})
        for p in load_catalog().publishers
    )
    with transaction() as session:
        upsert_catalog(session, Catalog(publishers=pointed))


def _services_env(writer: MockWriter) -> dict[str, str]:
    return {
        "WRITER_BACKEND": "openai",
        "WRITER_URL": writer.url,
        "WRITER_API_KEY": "chaos",
        "WRITER_MODEL": "chaos-mock",
        "DELIVERY_BACKEND": "webhook",
        # The bench's writer limit (100/s): latency and faults set the pace, not tokens.
        "BATCH_RATE_LIMITS": "writer=6000/min:100",
        "BATCH_CAP_GLOBAL": str(CAP_GLOBAL),
        "BATCH_CAP_PER_CUSTOMER": str(CAP_PER_CUSTOMER),
        "BATCH_CAP_PER_PUBLISHER": str(CAP_PER_PUBLISHER),
        "NO_PROXY": "127.0.0.1,localhost",  # httpx honours proxy variables
    }


@pytest.fixture(scope="module")
def latency_stack(
    tmp_path_factory: pytest.TempPathFactory, chaos_scale: ChaosScale
) -> Iterator[LatencyStack]:
    """A chaos stack whose workers start as ``batchline worker`` does, behind slow services."""
    scale = LATENCY_SCALES[chaos_scale.name]
    soft_limit = chaos_scale.setting("BATCH_TASK_SOFT_TIME_LIMIT")
    slow_s = soft_limit + SLOW_BEYOND_SOFT_LIMIT_S
    assert slow_s < chaos_scale.setting("WRITER_TIMEOUT_SECONDS"), "the client would cut it"
    writer = MockWriter(scale.writer_latency_s, jitter=JITTER, slow_every=SLOW_EVERY, slow_s=slow_s)
    publisher = MockPublisher(latency_s=WEBHOOK_LATENCY_S, unavailable_rate=0.02)
    with (
        writer,
        publisher,
        running_chaos_stack(
            tmp_path_factory,
            chaos_scale,
            _services_env(writer),
            kinds=("cpu", "io"),
            prepare=lambda: _point_publishers_at(publisher.url),
        ) as stack,
    ):
        yield LatencyStack(stack, writer, publisher, scale, soft_limit, slow_s)


def _deadline_hits(stack: ChaosStack) -> int:
    """Chunks whose own deadline (the soft limit) struck with calls under way, from the logs."""
    return sum(
        path.read_text(errors="replace").count("chunk.deadline")
        for path in stack.log_dir.glob("chaos*.log")
    )


def _kill_io_worker_mid_calls(env: LatencyStack, kill: int) -> int:
    """Once a share of the writing is done and a call is in flight, SIGKILL the I/O worker.

    Kill ``k`` of ``n`` waits for ``(k + 1) / (n + 1)`` of one writer call per order,
    so calls are still to come (and one will be open) whatever the machine's pace.
    Returns the writer calls open at the kill.
    """
    kills, orders = env.scale.io_worker_kills, env.scale.orders
    share = (kill + 1) / (kills + 1)

    def writing_under_way() -> bool:
        return len(env.writer.calls()) >= orders * share and env.writer.open_now() >= 1

    wait_until(writing_under_way, timeout=600, interval=0.01)
    open_calls = env.writer.open_now()
    env.stack.kill_and_restart("io")
    return open_calls


def _at_peak(spans: list[tuple[str, str, str, Any, Any]]) -> list[str]:
    """The spans open at the busiest instant: stage and seconds, to tell what overlapped."""
    instants = [started for *_, started, _ in spans]
    busiest = max(instants, key=lambda t: sum(1 for *_, s, f in spans if s <= t < f))
    return [
        f"{stage} {(finished - started).total_seconds():.1f}s from {started:%H:%M:%S.%f}"
        for stage, _, _, started, finished in spans
        if started <= busiest < finished
    ]


def _cap_peaks(batch_id: str) -> dict[str, Any]:
    """The most items at once in the ledger's spans of each cap's stages, and what overlapped.

    The defaults: the global and per-customer caps bound writing's calls, the
    per-publisher cap delivery's.
    """
    spans = output_spans(batch_id, stages=("writing", "delivery"))
    writing = [span for span in spans if span[0] == "writing"]
    delivery = [span for span in spans if span[0] == "delivery"]
    per_customer = max_overlap_by((customer, s, f) for _, customer, _, s, f in writing)
    per_publisher = max_overlap_by((publisher, s, f) for _, _, publisher, s, f in delivery)
    return {
        "global": max_overlap((started, finished) for *_, started, finished in writing),
        "per_customer": max(per_customer.values()),
        "per_publisher": max(per_publisher.values()),
        "at_peak": _at_peak(writing),
    }


@dataclass(frozen=True)
class LatencyRun:
    """What the faulty run did, for the tests that check its outcome."""

    batch_id: str
    seconds: float
    open_at_kills: list[int]


@pytest.fixture(scope="module")
def latency_run(latency_stack: LatencyStack) -> LatencyRun:
    """One batch behind the slow services, the I/O worker killed mid-call again and again."""
    env = latency_stack
    from tasks import submit_batch

    batch_id = f"latency-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    orders = make_orders(env.scale.orders, batch_id)
    submit_batch(orders, "chaos", "normal", {"batch_id": batch_id})
    open_at_kills = [_kill_io_worker_mid_calls(env, k) for k in range(env.scale.io_worker_kills)]
    assert wait_for_final([batch_id], timeout=1800) == {batch_id: "COMPLETED"}
    return LatencyRun(batch_id, time.monotonic() - started, open_at_kills)


def test_slow_services_with_io_worker_kills_and_soft_limits_lose_and_double_nothing(
    latency_stack: LatencyStack, latency_run: LatencyRun, chaos_report: dict[str, Any]
) -> None:
    env, batch_id = latency_stack, latency_run.batch_id
    orders = env.scale.orders
    # Every order is delivered, published once by the publisher's own count ...
    states = item_states(batch_id)
    assert len(states) == orders and set(states.values()) == {"DELIVERED"}
    publishes = env.publisher.publishes()
    order_ids = {str(o["order_id"]) for o in make_orders(orders, batch_id)}
    assert set(publishes) == order_ids, "an order was never published"
    doubled = {order: n for order, n in publishes.items() if n != 1}
    assert not doubled, f"published more than once: {doubled}"
    # ... with one receipt each, the batch finalized once and its status the ledger's
    receipts = receipts_per_item(batch_id)
    assert len(receipts) == orders and set(receipts.values()) == {1}
    assert finalize_events(batch_id) == 1
    assert progress_mismatches([batch_id]) == {}
    # ... and the faults really happened: chunks out of time mid-call
    deadline_hits = _deadline_hits(env.stack)
    assert deadline_hits >= 1, "no chunk reached its soft time limit mid-call"
    calls = [(call.start, call.end) for call in env.writer.calls()]
    peaks = _cap_peaks(batch_id)
    chaos_report["latency_bound"] = {
        "orders": orders,
        "delivered": len(states),
        "writer_latency_s": env.scale.writer_latency_s,
        "writer_jitter": JITTER,
        "slow_calls": f"every {SLOW_EVERY}th at {env.slow_s}s (soft limit {env.soft_limit_s}s)",
        "webhook_latency_s": WEBHOOK_LATENCY_S,
        "cap_global": CAP_GLOBAL,
        "io_worker_kills": len(latency_run.open_at_kills),
        "writer_calls_open_at_kills": latency_run.open_at_kills,
        "chunks_out_of_time_mid_call": deadline_hits,
        "seconds": round(latency_run.seconds, 1),
        "writer_calls": len(calls),
        "writer_calls_beyond_one_per_order": len(calls) - orders,
        "writer_peak_in_flight": peak_in_flight(calls),
        "writer_mean_in_flight": round(in_flight(calls).mean, 1),
        **{f"webhook_{name}": count for name, count in env.publisher.counts().items()},
        "duplicated_publishes": sum(n - 1 for n in publishes.values()),
        "ledger_peak_capped": peaks["global"],
        "ledger_peak_per_customer": peaks["per_customer"],
        "ledger_peak_per_publisher": peaks["per_publisher"],
    }


def test_slow_services_with_io_worker_kills_and_soft_limits_exceed_no_cap(
    latency_stack: LatencyStack, latency_run: LatencyRun
) -> None:
    peaks = _cap_peaks(latency_run.batch_id)
    assert peaks["global"] <= CAP_GLOBAL, (
        f"{peaks['global']} writing items at once (cap {CAP_GLOBAL}): {peaks['at_peak']}"
    )
    assert peaks["per_customer"] <= CAP_PER_CUSTOMER
    assert peaks["per_publisher"] <= CAP_PER_PUBLISHER
    calls = [(call.start, call.end) for call in latency_stack.writer.calls()]
    writer_peak = peak_in_flight(calls)
    assert writer_peak <= CAP_GLOBAL, f"the writer saw {writer_peak} calls at once"
