"""Threads or asyncio for a chunk's outside calls: issue 15's point 1, both measured side by side.

The issue offered two ways to run a chunk's calls concurrently: asyncio with
``httpx.AsyncClient``, or a bounded thread pool (what batchline runs,
``tasks/chunk_threads.py``). This runs the same calls both ways, in turns, in one
process, and compares what the process spends per call. Each call does what a
writing item does around its request: it takes its slots in the leased semaphores
(:data:`~tasks.limits.semaphore.ACQUIRE_SCRIPT` on the global, customer and
publisher keys), a token from the writer's bucket
(:data:`~tasks.limits.rate.TAKE_SCRIPT`), POSTs the chat completion batchline's
writer builds for its order to the bench's mock writer (real HTTP, in a process of
its own, so its CPU is not counted here), parses the answer and checks its link as
the writer does, and gives its slots back.

* ``threads``: ``ThreadPoolExecutor(concurrency)`` with redis-py and ``httpx.Client``,
  the clients batchline's I/O worker uses;
* ``asyncio``: one event loop, ``asyncio.Semaphore(concurrency)``, ``redis.asyncio``
  and ``httpx.AsyncClient``, the same scripts and the same pure code around them.

``--variants threads,threads:8`` compares instead one client with a ring of 8
(``pipeline.http_clients``), as the writer and publisher now send.

Per run: seconds, calls/s, this process's CPU (user and system) per call and its
peak threads. Runs alternate (threads, asyncio, threads, ...) so that the
machine's drift falls on every variant; the summary is each variant's median and
its ratio to the first's::

    .venv/bin/python -m bench.io_models --calls 1000 --concurrency 50 --latency 1 --rounds 3
    .venv/bin/python -m bench.io_models --calls 2000 --concurrency 200 --latency 2 \
        --variants threads,threads:8 --rounds 3

Uses ``REDIS_URL`` when set, else an embedded Valkey. Not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import multiprocessing
import resource
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

import httpx
import redis
import redis.asyncio as aioredis

from metrics.keys import rate_bucket_key, slot_key
from pipeline.http_clients import ClientRing
from pipeline.manifest import OrderDocument
from pipeline.writers.base import ensure_link_parsed, fill_prompt
from pipeline.writers.openai_compat import build_messages, strip_code_fences
from tasks.limits.rate import TAKE_SCRIPT, take, take_request
from tasks.limits.semaphore import (
    ACQUIRE_SCRIPT,
    SlotClaim,
    acquire,
    acquire_request,
    release,
    release_request,
)

MODELS: Final = ("threads", "asyncio")
#: a Redis database of its own, flushed before every run
IO_MODELS_REDIS_DB: Final = 9
LEASE_S: Final = 120.0
#: pause between two tries at a full semaphore (the slots equal the concurrency, so rare)
POLL_S: Final = 0.02
#: the writer's bucket: every call takes a token, none waits for one (pacing is not compared)
RATE_PER_MINUTE: Final = 6_000_000.0
RATE_BURST: Final = 100_000


@dataclass(frozen=True)
class Call:
    """One writer call: its slot claim, its request body and what its answer must link."""

    claim: SlotClaim
    payload: dict[str, Any]
    target_url: str
    anchor_text: str


@dataclass(frozen=True)
class ModelRun:
    """One run of one model."""

    model: str
    calls: int
    concurrency: int
    #: the threads model's HTTP clients (1: one client; asyncio: always 1)
    shards: int
    seconds: float
    calls_per_s: float
    cpu_user_s: float
    cpu_system_s: float
    #: this process's CPU (user + system) per call, milliseconds
    cpu_ms_per_call: float
    peak_threads: int
    #: answers whose article carried the order's link
    linked: int


def build_calls(count: int, concurrency: int, tag: str) -> list[Call]:
    """``count`` calls for sample orders; holders are unique per ``tag``."""
    from cli.sample_orders import sample_orders

    calls = []
    for index, raw in enumerate(sample_orders(count, seed=11, tag=tag)):
        order = OrderDocument.model_validate(raw)
        brief = fill_prompt(order, {})
        claim = SlotClaim(
            holder=f"{tag}-{index}:writing",
            keys=(
                slot_key("global"),
                slot_key("customer", order.customer_id),
                slot_key("publisher", order.publisher_domain),
            ),
            limits=(concurrency, concurrency, 0),
        )
        payload = {"model": "bench-io-models", "messages": build_messages(brief)}
        calls.append(Call(claim, payload, str(brief["target_url"]), str(brief["anchor_text"])))
    return calls


def _article(body: dict[str, Any], call: Call) -> str:
    """The answer's article with its link ensured, as the writer makes it."""
    content = str(body["choices"][0]["message"]["content"])
    fragment, _, _ = ensure_link_parsed(
        strip_code_fences(content), call.target_url, call.anchor_text
    )
    return fragment


def run_threads(
    calls: Sequence[Call], writer_url: str, redis_url: str, concurrency: int, shards: int = 1
) -> list[str]:
    """Every call in a bounded thread pool with the synchronous clients; articles in order.

    ``shards``: 1 sends through one ``httpx.Client`` sized for ``concurrency``; more,
    through a :class:`~pipeline.http_clients.ClientRing` of that many, as batchline's
    writer and publisher do.
    """
    client = redis.Redis.from_url(redis_url, max_connections=concurrency + 8)
    bucket = rate_bucket_key("writer")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    ring = (
        ClientRing.build(60.0, shards)
        if shards > 1
        else ClientRing([httpx.Client(timeout=60.0, limits=limits)], owned=True)
    )

    def one(call: Call) -> str:
        while not acquire(client, [call.claim], LEASE_S)[0]:
            time.sleep(POLL_S)
        try:
            while (wait := take(client, bucket, RATE_PER_MINUTE, RATE_BURST)) > 0:
                time.sleep(wait)
            response = ring.next().post(f"{writer_url}/chat/completions", json=call.payload)
            response.raise_for_status()
            return _article(response.json(), call)
        finally:
            release(client, [call.claim])

    try:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            return list(pool.map(one, calls))
    finally:
        ring.close()
        client.close()


def run_asyncio(
    calls: Sequence[Call], writer_url: str, redis_url: str, concurrency: int
) -> list[str]:
    """Every call as a coroutine of one event loop with the asyncio clients; articles in order."""
    return asyncio.run(_run_asyncio(calls, writer_url, redis_url, concurrency))


async def _run_asyncio(
    calls: Sequence[Call], writer_url: str, redis_url: str, concurrency: int
) -> list[str]:
    # Its pool refuses past max_connections (redis-py's default for asyncio is lower).
    client = aioredis.Redis.from_url(redis_url, max_connections=concurrency + 8)
    take_slots, take_token = (client.register_script(s) for s in (ACQUIRE_SCRIPT, TAKE_SCRIPT))
    bucket, token_args = rate_bucket_key("writer"), take_request(RATE_PER_MINUTE, RATE_BURST)
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as http:

        async def one(call: Call) -> str:
            async with gate:
                keys, args = acquire_request([call.claim], LEASE_S)
                while not (await take_slots(keys=keys, args=args))[0]:
                    await asyncio.sleep(POLL_S)
                try:
                    while (wait := int(await take_token(keys=[bucket], args=token_args))) > 0:
                        await asyncio.sleep(wait / 1_000_000)
                    response = await http.post(f"{writer_url}/chat/completions", json=call.payload)
                    response.raise_for_status()
                    return _article(response.json(), call)
                finally:
                    pipe = client.pipeline(transaction=False)
                    for key, holders in release_request([call.claim]).items():
                        pipe.zrem(key, *holders)
                    await pipe.execute()

        try:
            return list(await asyncio.gather(*(one(call) for call in calls)))
        finally:
            await client.aclose()


class _ThreadPeak:
    """The most threads this process had, read from ``/proc/self/status`` every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> _ThreadPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, _threads_now() - 1)  # not this sampler


def _threads_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def measure(
    model: str,
    calls: Sequence[Call],
    writer_url: str,
    redis_url: str,
    concurrency: int,
    shards: int = 1,
) -> tuple[ModelRun, list[str]]:
    """Run ``calls`` with ``model`` (``shards``: the threads model's clients); figures, articles."""
    redis.Redis.from_url(redis_url).flushdb()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with _ThreadPeak() as threads:
        if model == "threads":
            articles = run_threads(calls, writer_url, redis_url, concurrency, shards)
        else:
            articles = run_asyncio(calls, writer_url, redis_url, concurrency)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    run = ModelRun(
        model=model,
        calls=len(calls),
        concurrency=concurrency,
        shards=shards if model == "threads" else 1,
        seconds=round(seconds, 2),
        calls_per_s=round(len(calls) / seconds, 1),
        cpu_user_s=round(user, 2),
        cpu_system_s=round(system, 2),
        cpu_ms_per_call=round((user + system) * 1000 / len(calls), 2),
        peak_threads=threads.peak,
        linked=sum(_links(call, article) for call, article in zip(calls, articles, strict=True)),
    )
    return run, articles


def _links(call: Call, article: str) -> bool:
    """Whether ``article`` carries the call's link (its href escaped as in HTML)."""
    return f'href="{html.escape(call.target_url, quote=True)}"' in article


def label(run: ModelRun) -> str:
    """The run's variant: ``threads``, ``threads:<shards>`` or ``asyncio``."""
    return run.model if run.shards == 1 else f"{run.model}:{run.shards}"


def parse_variant(text: str) -> tuple[str, int]:
    """``threads``, ``threads:8`` or ``asyncio`` -> (model, shards)."""
    model, _, shards = text.partition(":")
    if model not in MODELS or (shards and model != "threads"):
        raise ValueError(f"unknown variant {text!r}: threads, threads:<clients> or asyncio")
    return model, int(shards or 1)


def summary(runs: Sequence[ModelRun]) -> dict[str, Any]:
    """Each variant's medians, and each later variant's against the first one's."""
    labels = list(dict.fromkeys(label(run) for run in runs))
    medians = {}
    for name in labels:
        mine = [run for run in runs if label(run) == name]
        medians[name] = {
            "calls_per_s": statistics.median(run.calls_per_s for run in mine),
            "cpu_ms_per_call": statistics.median(run.cpu_ms_per_call for run in mine),
            "peak_threads": max(run.peak_threads for run in mine),
        }
    base = medians[labels[0]] if labels else {}
    against = {
        f"{name}_vs_{labels[0]}": {
            "cpu_per_call": round(medians[name]["cpu_ms_per_call"] / base["cpu_ms_per_call"], 3),
            "calls_per_s": round(medians[name]["calls_per_s"] / base["calls_per_s"], 3),
        }
        for name in labels[1:]
    }
    return {"medians": medians, **against}


def _serve_writer(latency_s: float, conn: Connection) -> None:
    """A mock writer in a process of its own: sends its URL, serves until told to stop."""
    from bench.mock_services import MockWriter

    with MockWriter(latency_s, jitter=0.2) as writer:
        conn.send(writer.url)
        conn.recv()


def compare(
    *,
    calls: int,
    concurrency: int,
    latency_s: float,
    rounds: int,
    redis_url: str,
    variants: Sequence[tuple[str, int]] = (("threads", 1), ("asyncio", 1)),
) -> dict[str, Any]:
    """Alternate ``variants`` (model, clients) ``rounds`` times against one mock writer."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    server = context.Process(target=_serve_writer, args=(latency_s, theirs), daemon=True)
    server.start()
    try:
        url = str(ours.recv())
        for model, shards in variants:  # connections, scripts and imports ready first
            warm = build_calls(min(calls, 50), concurrency, f"{model}-{shards}-warm")
            measure(model, warm, url, redis_url, concurrency, shards)
        runs = []
        for round_ in range(rounds):
            for model, shards in variants:
                batch = build_calls(calls, concurrency, tag=f"{model}-{shards}-{round_}")
                run, _ = measure(model, batch, url, redis_url, concurrency, shards)
                runs.append(run)
                print(json.dumps(asdict(run)), flush=True)
    finally:
        ours.send("stop")
        server.join(timeout=10)
    return {
        "latency_s": latency_s,
        "runs": [asdict(run) for run in runs],
        "summary": summary(runs),
    }


def _redis_url(stack: ExitStack) -> str:
    from bench.services import redis_url_with_db
    from cli.embedded import EmbeddedValkey
    from pipeline.settings import get_settings

    url = get_settings().redis_url or stack.enter_context(EmbeddedValkey()).url
    return redis_url_with_db(url, IO_MODELS_REDIS_DB)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.io_models``: see the module's docstring."""
    parser = argparse.ArgumentParser(prog="python -m bench.io_models", description=__doc__)
    parser.add_argument("--calls", type=int, default=1000, help="calls per run")
    parser.add_argument("--concurrency", type=int, default=50, help="calls at once")
    parser.add_argument("--latency", type=float, default=1.0, help="the writer's answer time, s")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each model")
    parser.add_argument(
        "--variants",
        default="threads,asyncio",
        help="comma-separated: threads (one client), threads:<clients> (a ring), asyncio",
    )
    parser.add_argument("--out", type=Path, default=Path("var/bench/io-models.json"))
    args = parser.parse_args(argv)
    variants = [parse_variant(text.strip()) for text in args.variants.split(",")]
    with ExitStack() as stack:
        result = compare(
            calls=args.calls,
            concurrency=args.concurrency,
            latency_s=args.latency,
            rounds=args.rounds,
            redis_url=_redis_url(stack),
            variants=variants,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
