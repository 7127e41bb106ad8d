"""Every environment variable batchline reads, in one pydantic-settings class.

Nothing else in the code base reads ``os.environ`` for configuration; call
:func:`get_settings` instead. A bad value stops start-up with a message that
names the variable (:class:`SettingsError`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.limits import RateSpec, parse_rate_limits
from pipeline.schedule import (
    DEFAULT_LANES,
    ScheduleError,
    SchedulePlan,
    parse_plan,
    stage_time_limits,
    unknown_schedule_variables,
)
from pipeline.stage_registry import DELIVERY, PREFLIGHT, QC, STAGE_NAMES, STAGES, WRITING

Priority = Literal["high", "normal", "low"]


class SettingsError(RuntimeError):
    """Raised when an environment variable holds a value batchline cannot use."""


#: The setting that bounds one call through each circuit (``Settings.call_timeout``).
_TIMEOUT_SETTINGS = {"writer": "WRITER_TIMEOUT_SECONDS", "publisher": "DELIVERY_TIMEOUT_SECONDS"}


class Settings(BaseSettings):
    """batchline's configuration; field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    redis_url: str | None = Field(default=None, description="Broker, progress and caches.")
    database_url: str | None = Field(default=None, description="The PostgreSQL ledger.")
    redis_prefix_batch: str = Field(default="batch:", min_length=1)
    redis_prefix_metrics: str = Field(default="metrics:", min_length=1)
    batch_default_priority: Priority = "normal"
    batch_cache_warm_threshold: int = Field(default=5, ge=0)
    batch_metrics_ttl_days: int = Field(default=7, ge=1, le=365)
    batch_max_items: int = Field(default=100_000, ge=1, le=10_000_000)
    batch_output_dir: Path = Path("var/outbox")
    batch_lease_seconds: int = Field(default=660, ge=5)
    batch_task_soft_time_limit: int = Field(default=540, ge=1)
    batch_task_time_limit: int = Field(default=600, ge=2)
    batch_visibility_timeout: int = Field(default=1800, ge=10)
    #: prefork processes ``batchline worker`` starts for preflight, QC and housekeeping
    #: (the default of ``--concurrency``); with ``BATCH_IO_WORKER_THREADS`` 0 they run
    #: every stage, so raise it then. See docs/architecture.md, "Two pools"
    batch_worker_concurrency: int = Field(default=1, ge=1, le=256)
    batch_sweep_interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    batch_sweep_grace_seconds: float = Field(default=10.0, ge=0)
    batch_idempotency_ttl_hours: int = Field(default=24, ge=1)
    #: longest a ledger session waits for a row lock before its statement fails (and
    #: its task retries): a frozen peer can stall nobody for longer
    batch_db_lock_timeout_ms: int = Field(default=30_000, ge=100, le=3_600_000)
    #: longest the sweeper waits for a row lock; a step that would wait longer is
    #: skipped and runs again in the next sweep, so sweeps keep completing
    batch_sweep_lock_timeout_ms: int = Field(default=2_000, ge=50, le=60_000)
    #: PostgreSQL ends a session idle inside a transaction for this long (a frozen or
    #: cut-off worker), releasing its locks; no transaction of ours waits on anything
    #: outside the ledger, so seconds would do
    batch_db_idle_in_transaction_timeout_s: int = Field(default=60, ge=5, le=86_400)
    #: seconds of silence before TCP keepalive probes a ledger connection (both ends);
    #: a dead peer is noticed after about twice this
    batch_db_keepalive_idle_s: int = Field(default=30, ge=1, le=7_200)
    #: a pool process is replaced after this many tasks; 0: never (Celery's default),
    #: so the memory limit below is the guard. A replacement strands the message the
    #: worker fetched meanwhile until the new process is up (0.3-5 s measured)
    celery_worker_max_tasks_per_child: int = Field(default=0, ge=0)
    celery_worker_max_memory_per_child: int = Field(default=400_000, ge=10_000)
    batch_anchor_window_days: int = Field(default=30, ge=1, le=365)
    batch_exact_anchor_max_share: float = Field(default=0.3, gt=0, le=1)
    batch_duplicate_window_days: int = Field(default=30, ge=0, le=365)
    qc_max_rewrites: int = Field(default=2, ge=0, le=10)
    writer_backend: Literal["offline", "openai"] = "offline"
    #: the offline writer waits this long per article (an LLM's answer time, for load tests)
    writer_offline_latency_ms: int = Field(default=0, ge=0, le=600_000)
    writer_url: str | None = None
    writer_api_key: str | None = None
    writer_model: str = "gpt-4o-mini"
    writer_timeout_seconds: float = Field(default=60.0, gt=0, le=600)
    writer_max_retries: int = Field(default=3, ge=0, le=10)
    delivery_backend: Literal["filesystem", "webhook"] = "filesystem"
    delivery_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"

    #: messages the feeder keeps queued per lane; the rest waits in the ledger's pool
    batch_lane_window: int = Field(default=16, ge=1, le=10_000)
    #: a queued item unclaimed for this long has lost its message: back to the pool
    batch_queued_stale_seconds: float = Field(default=900.0, gt=0)
    batch_cap_global: int = Field(default=50, ge=0)
    batch_cap_per_customer: int = Field(default=10, ge=0)
    batch_cap_per_publisher: int = Field(default=5, ge=0)
    #: stages whose items hold a global and a per-customer slot during their calls (writing)
    batch_capped_stages: str = ",".join(stage.name for stage in STAGES if stage.capped)
    #: stages whose items hold a slot of their publisher domain during their calls (delivery)
    batch_publisher_capped_stages: str = ",".join(s.name for s in STAGES if s.publisher_capped)
    # The writer's bucket, and the batch guide's preflight limit (100/min, burst 20).
    batch_rate_limits: str = "writer=60/min:20,preflight=100/min:20"
    batch_rate_limit_max_wait_seconds: float = Field(default=2.0, ge=0, le=60)
    batch_stage_handlers: Literal["real", "noop"] = "real"
    #: outside calls (writer, webhooks) one worker process makes at once within a chunk
    batch_io_concurrency: int = Field(default=32, ge=1, le=256)
    #: chunks of I/O-bound stages (writing, delivery) that ``batchline worker``'s threads
    #: worker runs at once beside its processes; 0: the prefork processes run them too
    batch_io_worker_threads: int = Field(default=32, ge=0, le=256)
    #: how many such threads workers ``batchline worker`` starts: each is one process with
    #: its own interpreter lock, so the CPU work between calls spreads over cores (two
    #: and one prefork process: E at 2 s 20.8-21.0 orders/s in 0.9 GB on 2 cores)
    batch_io_worker_processes: int = Field(default=2, ge=1, le=16)
    #: how long an item of an I/O-bound stage waits for a concurrency slot taken by
    #: another before it goes back to the pool (0: at once); see tasks.chunk_runner.ChunkRun.take
    batch_slot_wait_seconds: float = Field(default=1.0, ge=0, le=30)
    #: the feeder sends writing/delivery work for this share more than the free slots, so
    #: items wait at the slots (BATCH_SLOT_WAIT_SECONDS) instead of the slots for a feed;
    #: work already queued for the slots (in the last BATCH_SWEEP_GRACE_SECONDS) counts as taken
    batch_feed_surplus: float = Field(default=0.3, ge=0, le=2)
    #: a writing chunk runs QC on what it wrote and records one state change per item
    #: (``pipeline.fusing``); false: QC claims and records them in chunks of its own
    batch_fuse_stages: bool = True
    #: chunks in a threads-pool worker (the I/O worker) fuse too; false (the default):
    #: only prefork processes do, and writing chunks there hand QC to the CPU workers'
    #: own chunks, where higher lanes overtake (docs/architecture.md, "Where it runs")
    batch_fuse_in_threads: bool = False

    # Chunk sizes per stage; the defaults are the stage records' (the batch guide's).
    batch_chunk_preflight_optimal: int = Field(default=PREFLIGHT.chunk_optimal, ge=1)
    batch_chunk_preflight_max: int = Field(default=PREFLIGHT.chunk_max, ge=1)
    batch_chunk_writing_optimal: int = Field(default=WRITING.chunk_optimal, ge=1)
    batch_chunk_writing_max: int = Field(default=WRITING.chunk_max, ge=1)
    batch_chunk_qc_optimal: int = Field(default=QC.chunk_optimal, ge=1)
    batch_chunk_qc_max: int = Field(default=QC.chunk_max, ge=1)
    batch_chunk_delivery_optimal: int = Field(default=DELIVERY.chunk_optimal, ge=1)
    batch_chunk_delivery_max: int = Field(default=DELIVERY.chunk_max, ge=1)

    # Retention per checkpoint kind (docs/operating.md#retention); 0 keeps it for ever.
    #: days the free-form part of a finished order as received (its ``metadata``) is kept
    batch_retention_received_days: int = Field(default=30, ge=0, le=36_500)
    #: days preflight's successful outputs (matrix and writer prompt) of finished orders are kept
    batch_retention_preflight_days: int = Field(default=90, ge=0, le=36_500)
    #: days the written drafts (writing's successful outputs) of finished orders are kept
    batch_retention_writing_days: int = Field(default=180, ge=0, le=36_500)
    #: days QC reports are kept (0: for ever, as the batch guide asks)
    batch_retention_qc_days: int = Field(default=0, ge=0, le=36_500)
    #: days delivery outputs are kept (0: for ever; the delivery_receipts table is never pruned)
    batch_retention_delivery_days: int = Field(default=0, ge=0, le=36_500)
    #: the daily prune's start, HH:MM in UTC (beat's crontab)
    batch_prune_at: str = Field(default="03:15", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    #: rows the prune rewrites per transaction (locks held only that long)
    batch_prune_batch_size: int = Field(default=1000, ge=1, le=50_000)

    #: comma-separated http(s) URLs that receive signed JSON notifications (none: the log)
    batch_notify_urls: str = ""
    #: the HMAC-SHA256 key of the ``X-Batchline-Signature`` header (required with URLs)
    batch_notify_secret: str | None = None
    #: seconds one notification POST may take
    batch_notify_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    #: tries per URL inside one notify task run (exponential backoff with jitter between)
    batch_notify_max_attempts: int = Field(default=5, ge=1, le=20)
    #: an unsent event the sweeper queued again waits this long before it is queued once more
    batch_notify_requeue_seconds: float = Field(default=120.0, gt=0, le=86_400)

    #: consecutive transient failures of a service or publisher endpoint that open its circuit
    breaker_failures: int = Field(default=5, ge=1, le=1000)
    #: the failures must fall within this many seconds (an older failure starts a new count)
    breaker_window_seconds: float = Field(default=60.0, gt=0, le=86_400)
    #: how long an open circuit defers its orders before one probe is let through
    breaker_cooldown_seconds: float = Field(default=30.0, gt=0, le=86_400)

    # Fixed run times per stage (docs/schedules.md); all UTC.
    #: `guide`: every stage at the guide's run times unless its own variable says otherwise
    batch_schedule_preset: Literal["", "guide"] = ""
    #: lanes the schedules apply to; other lanes' work passes scheduled stages at once
    batch_schedule_lanes: str = DEFAULT_LANES
    #: `continuous`, UTC times `08:00,14:00,20:00` or `every 20s+5s`; empty: the preset's
    batch_schedule_preflight: str = ""
    #: how long a preflight run may start chunks (`30m`, `2h`, `45s`); empty: the guide's
    batch_schedule_preflight_window: str = ""
    #: writing's run times (as `BATCH_SCHEDULE_PREFLIGHT`)
    batch_schedule_writing: str = ""
    #: how long a writing run may start chunks; empty: the guide's 2h
    batch_schedule_writing_window: str = ""
    #: QC's run times (as `BATCH_SCHEDULE_PREFLIGHT`)
    batch_schedule_qc: str = ""
    #: how long a QC run may start chunks; empty: the guide's 1h
    batch_schedule_qc_window: str = ""
    #: delivery's run times (as `BATCH_SCHEDULE_PREFLIGHT`)
    batch_schedule_delivery: str = ""
    #: how long a delivery run may start chunks; empty: the guide's 30m
    batch_schedule_delivery_window: str = ""
    #: the daily batch summary event, HH:MM in UTC (beat's crontab)
    batch_summary_at: str = Field(default="00:05", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    # The HTTP API (``batchline api``, docs/http-api.md).
    #: largest request body the API reads; a larger one is refused with 413
    api_max_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, le=2**31)
    #: submits per API key as RATE/UNIT[:BURST] (the BATCH_RATE_LIMITS format); 429 beyond
    api_submit_rate: str = "60/min:20"
    #: comma-separated origins CORS allows (empty: CORS off, browsers get no CORS headers)
    api_cors_origins: str = ""
    #: /readyz wants a worker consuming each lane seen within this many seconds
    api_ready_worker_seconds: float = Field(default=30.0, gt=0, le=3600)
    #: how often the API reads a watched batch's progress hash for its event streams
    api_events_interval_seconds: float = Field(default=0.5, gt=0, le=60)
    #: serve the API's /metrics without a key (for a Prometheus inside the cluster)
    api_metrics_public: bool = False

    # Single-order intake (``tasks.intake.OrderIntake``, ``POST /v1/orders``, docs/api.md).
    #: a (project, priority) group of single orders becomes a batch at this many (≤ BATCH_MAX_ITEMS)
    intake_max_orders: int = Field(default=500, ge=1, le=100_000)
    #: a group of single orders also becomes a batch when its oldest has waited this long
    intake_max_wait_seconds: float = Field(default=30.0, gt=0, le=86_400)
    #: how often an intake (and beat's backstop entry) looks for groups due by age
    intake_flush_interval_seconds: float = Field(default=5.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _check_relations(self) -> Settings:
        for stage in STAGE_NAMES:
            if self.chunk_optimal(stage) > self.chunk_max(stage):
                name = f"BATCH_CHUNK_{stage.upper()}"
                raise ValueError(f"{name}_OPTIMAL must not exceed {name}_MAX")
        if self.batch_task_soft_time_limit >= self.batch_task_time_limit:
            raise ValueError("BATCH_TASK_SOFT_TIME_LIMIT must be below BATCH_TASK_TIME_LIMIT")
        self._check_schedules()
        # A chunk still running when the broker's visibility timeout expires is
        # delivered a second time, and an item whose lease ran out is sent again: keep
        # both above the largest hard limit, and above the latest a call can still be
        # under way (started just before the soft limit, ended by its HTTP timeout).
        # A killed worker cannot end its calls: until then their slots stay taken.
        limit, call = self._longest_time_limit(), self._longest_call()
        longest, why = call if call[0] > limit[0] else limit
        if self.batch_visibility_timeout <= longest:
            raise ValueError(f"BATCH_VISIBILITY_TIMEOUT must exceed {why} ({longest:g} s)")
        if self.batch_lease_seconds <= longest:
            raise ValueError(f"BATCH_LEASE_SECONDS must exceed {why} ({longest:g} s)")
        for name, stages in (
            ("BATCH_CAPPED_STAGES", self.capped_stages()),
            ("BATCH_PUBLISHER_CAPPED_STAGES", self.publisher_capped_stages()),
        ):
            unknown = stages - set(STAGE_NAMES)
            if unknown:
                raise ValueError(
                    f"{name} names unknown stage(s) {', '.join(sorted(unknown))};"
                    f" choose from {', '.join(STAGE_NAMES)}"
                )
        parse_rate_limits(self.batch_rate_limits)  # raises naming the bad entry
        self.api_submit_spec()  # raises naming the bad value
        bad = [url for url in self.notify_urls() if not url.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"BATCH_NOTIFY_URLS must be http(s) URLs, got {', '.join(bad)}")
        if self.notify_urls() and not self.batch_notify_secret:
            raise ValueError("BATCH_NOTIFY_URLS needs BATCH_NOTIFY_SECRET to sign the messages")
        return self

    def _check_schedules(self) -> None:
        try:
            self.schedules()
        except ScheduleError as error:
            raise ValueError(str(error)) from None
        # pydantic-settings ignores variables it has no field for: a misspelt stage
        # would silently leave that stage continuous.
        unknown = unknown_schedule_variables(os.environ)
        if unknown:
            raise ValueError(
                f"{', '.join(unknown)}: no such schedule setting; stages: {', '.join(STAGE_NAMES)}"
            )

    def _longest_call(self) -> tuple[float, str]:
        ends = [
            (
                self.stage_time_limits(stage.name)[0] + self.call_timeout(stage.circuit),
                f"the {stage.name} stage's soft time limit + {_TIMEOUT_SETTINGS[stage.circuit]}",
            )
            for stage in STAGES
            if stage.circuit in _TIMEOUT_SETTINGS
        ]
        return max(ends, default=(0.0, "no call"))

    def _longest_time_limit(self) -> tuple[int, str]:
        limits = [(self.stage_time_limits(s)[1], s) for s in STAGE_NAMES]
        longest, stage = max(limits)
        if longest == self.batch_task_time_limit:
            return longest, "BATCH_TASK_TIME_LIMIT"
        return longest, f"the scheduled {stage} stage's time limit"

    def schedules(self) -> SchedulePlan:
        """Every stage's schedule (``BATCH_SCHEDULE_*``), parsed.

        Raises:
            ScheduleError: a schedule variable is invalid (the message names it).
        """
        return parse_plan(
            {s: getattr(self, f"batch_schedule_{s}") for s in STAGE_NAMES},
            {s: getattr(self, f"batch_schedule_{s}_window") for s in STAGE_NAMES},
            preset=self.batch_schedule_preset,
            lanes=self.batch_schedule_lanes,
        )

    def call_timeout(self, circuit: str | None) -> float:
        """The HTTP timeout of one call through ``circuit`` (``writer``, ``publisher``; None: 0)."""
        timeouts = {
            "writer": self.writer_timeout_seconds,
            "publisher": self.delivery_timeout_seconds,
        }
        return timeouts.get(circuit or "", 0.0)

    def stage_time_limits(self, stage: str) -> tuple[int, int]:
        """``stage``'s (soft, hard) task time limits: its window's when it is scheduled."""
        return stage_time_limits(
            self.schedules().of(stage),
            self.batch_task_soft_time_limit,
            self.batch_task_time_limit,
        )

    def capped_stages(self) -> frozenset[str]:
        """Stages whose running items hold a global and a per-customer slot."""
        return _stage_set(self.batch_capped_stages)

    def publisher_capped_stages(self) -> frozenset[str]:
        """Stages whose running items hold a slot of their publisher domain."""
        return _stage_set(self.batch_publisher_capped_stages)

    def rate_limits(self) -> dict[str, RateSpec]:
        """``BATCH_RATE_LIMITS`` parsed: service -> token bucket."""
        return parse_rate_limits(self.batch_rate_limits)

    def api_submit_spec(self) -> RateSpec:
        """``API_SUBMIT_RATE`` parsed: the token bucket each API key submits through."""
        try:
            spec = parse_rate_limits(f"submit={self.api_submit_rate}")["submit"]
        except ValueError as error:
            raise ValueError(f"API_SUBMIT_RATE: {error}") from None
        if spec.per_day or spec.concurrency or spec.per_key:
            # Each key already has its own bucket; a quota or a call bound means nothing here.
            raise ValueError("API_SUBMIT_RATE takes RATE/UNIT[:BURST] only, e.g. 60/min:20")
        return spec

    def cors_origins(self) -> list[str]:
        """``API_CORS_ORIGINS`` split on commas (empty: CORS off)."""
        return [origin.strip() for origin in self.api_cors_origins.split(",") if origin.strip()]

    def notify_urls(self) -> list[str]:
        """``BATCH_NOTIFY_URLS`` split on commas (empty: notifications go to the log)."""
        return [url.strip() for url in self.batch_notify_urls.split(",") if url.strip()]

    def retention_days(self, kind: str) -> int:
        """Days a checkpoint ``kind`` is kept (``BATCH_RETENTION_<KIND>_DAYS``; 0: for ever)."""
        return int(getattr(self, f"batch_retention_{kind}_days"))

    def chunk_optimal(self, stage: str) -> int:
        """Return the optimal chunk size for ``stage``."""
        return int(getattr(self, f"batch_chunk_{stage}_optimal"))

    def chunk_max(self, stage: str) -> int:
        """Return the largest chunk size allowed for ``stage``."""
        return int(getattr(self, f"batch_chunk_{stage}_max"))

    def require_redis_url(self) -> str:
        """Return ``REDIS_URL`` or raise a :class:`SettingsError` saying it is missing."""
        if not self.redis_url:
            raise SettingsError("REDIS_URL is not set (e.g. redis://localhost:6379/0)")
        return self.redis_url

    def require_database_url(self) -> str:
        """Return ``DATABASE_URL`` for SQLAlchemy's psycopg 3 driver, or raise if missing."""
        if not self.database_url:
            raise SettingsError("DATABASE_URL is not set (e.g. postgresql://user@host/db)")
        return sqlalchemy_url(self.database_url)


def _stage_set(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def sqlalchemy_url(url: str) -> str:
    """Point a plain ``postgresql://`` URL at the psycopg 3 driver."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        message = item["msg"].removeprefix("Value error, ")
        if not item["loc"]:  # a rule across fields: its message names the variables
            lines.append(message)
            continue
        name = "_".join(str(part) for part in item["loc"]).upper()
        lines.append(f"{name}: {message} (got {item.get('input')!r})")
    return "invalid configuration: " + "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Load and cache the settings from the environment.

    Raises:
        SettingsError: a variable holds a value that fails validation.
    """
    try:
        return Settings()
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None
