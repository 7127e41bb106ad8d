"""SQLAlchemy 2 models of the ledger.

Batches own items; every stage output is kept (a checkpoint per stage and
attempt); a delivery receipt exists at most once per item; the event log keeps
what happened, and a partial unique index allows exactly one ``finalized``
event per batch, so a second finalize fails in the database, not just in code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Computed,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ledger.notifications import UNSENT_SQL
from pipeline.stage_registry import pooled_kind_sql, queued_io_sql
from pipeline.states import open_sql, pooled_sql

#: An approved QC report's signature, packed by ``qc_signature_bytes`` (migration 0015).
_SIGNATURE_SQL = (
    "CASE WHEN stage = 'qc' AND ok AND jsonb_typeof(output -> 'signature') = 'array'"
    " THEN qc_signature_bytes(output -> 'signature') END"
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Batch(Base):
    """One submitted batch of orders."""

    __tablename__ = "batches"
    __table_args__ = (
        # The feeder's running batches, without reading every finished one.
        Index("ix_batches_running", "id", postgresql_where=text("status = 'RUNNING'")),
        # A recovery round exists once per lineage: its id is derived from it.
        UniqueConstraint("root_batch_id", "recovery_round", name="uq_batches_root_round"),
        # The outbox of on_complete callbacks: finalized, asked for, not yet sent.
        Index(
            "ix_batches_on_complete_pending",
            "finalized_at",
            postgresql_where=text(
                "finalized_at IS NOT NULL AND on_complete_sent_at IS NULL"
                " AND options ? 'on_complete'"
            ),
        ),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    project_uuid: Mapped[str] = mapped_column(String(128), nullable=False)
    priority: Mapped[str] = mapped_column(String(8), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="PENDING")
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    manifest_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    total_items: Mapped[int] = mapped_column(Integer, nullable=False)
    task_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    finalized_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the batch this one recovers (NULL: an original submission)
    origin_batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"), index=True)
    #: the lineage's original batch: with the order id, the delivery idempotency key
    root_batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"))
    #: 1, 2, ... for the recoveries of one lineage (NULL: an original submission)
    recovery_round: Mapped[int | None] = mapped_column(Integer)
    #: when the ``options.on_complete`` callback was sent (the outbox's mark)
    on_complete_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Item(Base):
    """One order in a batch and where it is; ``lease_*`` mark a claim by a worker."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("batch_id", "order_id", name="uq_items_batch_order"),
        Index("ix_items_batch_state", "batch_id", "state"),
        # Tiny and exact: answers "is anything of this batch still open?" at once.
        Index("ix_items_open", "batch_id", postgresql_where=text(open_sql())),
        # The sweeper's question "whose lease ran out?" without scanning every item.
        Index(
            "ix_items_leased",
            "lease_expires_at",
            postgresql_where=text("lease_expires_at IS NOT NULL"),
        ),
        # The feeder's question "what goes next in this lane's I/O queue (or its other
        # one)?" as one short index walk per running batch and kind (highest score
        # first, then the fair-share rank, then submission order), merged: each walk
        # stops at what its queue has room for, not at the batch's end (migration 0016).
        *(
            Index(
                f"ix_items_pool_{kind}",
                "batch_id",
                "lane",
                text("score DESC"),
                "fair_rank",
                "id",
                postgresql_where=text(pooled_kind_sql(io_bound)),
            )
            for kind, io_bound in (("io", True), ("cpu", False))
        ),
        # Best first within each state: with a scheduled stage's window shut the feeder
        # skips a held backlog without walking it. updated_at rides along so the
        # exporter's "how many wait in each lane, at which stage, since when?" is an
        # index-only scan too (metrics.exporter, every scrape).
        Index(
            "ix_items_pool_state",
            "lane",
            "state",
            text("score DESC"),
            "fair_rank",
            "id",
            postgresql_include=["updated_at"],
            postgresql_where=text(pooled_sql()),
        ),
        # The sweeper's question "which messages may have been lost?".
        Index("ix_items_queued", "queued_at", postgresql_where=text("queued_at IS NOT NULL")),
        # The feeder's question "how much writing and delivery work is already on its
        # way to the slots?": only the few queued rows of those stages (migration 0020).
        Index(
            "ix_items_queued_io",
            "lane",
            "queued_at",
            postgresql_where=text(queued_io_sql()),
        ),
        # A lineage's members, found from its root: recovery items only.
        Index(
            "ix_items_origin_item_id",
            "origin_item_id",
            postgresql_where=text("origin_item_id IS NOT NULL"),
        ),
        # An item is recovered once. Partial (migration 0017): as a plain unique
        # constraint every row version of every item, NULL included, took an entry,
        # one more index write in each of an order's nine updates.
        Index(
            "uq_items_recovers_item_id",
            "recovers_item_id",
            unique=True,
            postgresql_where=text("recovers_item_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    order_id: Mapped[str] = mapped_column(String(128), nullable=False)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    publisher_domain: Mapped[str] = mapped_column(String(253), nullable=False)
    #: the order's deadline, copied so the sweeper's score refresh reads it from the
    #: row it scores; the order itself is in ``order_documents`` (migration 0019)
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="PENDING")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error_class: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the batch's priority lane, copied so the feeder's index covers it
    lane: Mapped[str] = mapped_column(String(8), nullable=False, server_default="normal")
    #: ``calculate_priority`` at submission, refreshed by the sweeper as orders wait
    score: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    #: the customer's order count in the batch plus the order's position among them:
    #: ties go to the smaller customer first (``pipeline.priority.fair_ranks``)
    fair_rank: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    #: when a message for the item's current stage was published (NULL: in the pool)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    #: the lineage's root item (NULL: the item is its own root)
    origin_item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))
    #: the failed item this one recovers; unique, so an item is recovered once
    recovers_item_id: Mapped[int | None] = mapped_column(ForeignKey("items.id"))


class StageOutput(Base):
    """What a stage produced for an item: the checkpoint a redelivered chunk skips on."""

    __tablename__ = "stage_outputs"
    __table_args__ = (
        UniqueConstraint("item_id", "stage", "attempt", name="uq_stage_outputs"),
        # QC's near-duplicate look-up: a publisher's newest approved articles, read
        # from the index alone (it carries the packed signature; migration 0015).
        Index(
            "ix_stage_outputs_article_signatures",
            "publisher_domain",
            text("id DESC"),
            postgresql_include=["item_id", "signature"],
            postgresql_where=text("signature IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), nullable=False)
    stage: Mapped[str] = mapped_column(String(16), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    ok: Mapped[bool] = mapped_column(nullable=False)
    output: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    #: the item ran (its slots held) from ``started_at`` to ``finished_at``
    #: (outcome about to commit), by the worker's clock: caps are audited from these
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: the item's publisher, copied so QC finds a publisher's articles by index
    publisher_domain: Mapped[str | None] = mapped_column(String(253))
    #: an approved QC report's MinHash signature as big-endian int4s, generated from
    #: ``output`` by PostgreSQL (function ``qc_signature_bytes``, migration 0015)
    signature: Mapped[bytes | None] = mapped_column(
        LargeBinary, Computed(_SIGNATURE_SQL, persisted=True)
    )
    created_at: Mapped[datetime] = _now()


class OrderTarget(Base):
    """An order's customer and target page as stored: preflight's history look-up.

    Insert-only (:mod:`ledger.targets`): written with the item, never updated, so
    the look-up's random-key index is written once per order, not once per row
    version of the item. No foreign key: its check would lock every new item row.
    """

    __tablename__ = "order_targets"
    __table_args__ = (
        # A customer's orders of a few target pages in the window, however long its history.
        Index("ix_order_targets_lookup", "customer_id", "target_url", "created_at"),
    )

    #: the item's id: monotonic, so the primary key only ever appends
    item_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    customer_id: Mapped[str] = mapped_column(String(128), nullable=False)
    #: ``document ->> 'target_url'`` of the item
    target_url: Mapped[str | None] = mapped_column(Text)
    #: the item's ``created_at``
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class StoredDocument(Base):
    """An item's order as submitted: ``pipeline.manifest.OrderDocument`` as JSON.

    Every stage validates and reads it. Insert-only but for retention's pruning of
    the free-form metadata (:mod:`ledger.documents`): kept out of ``items``, whose
    every state change writes a new row version, so an order's JSON is written once
    instead of with each of its nine updates. No foreign key, for the reason
    ``order_targets`` has none.
    """

    __tablename__ = "order_documents"

    #: the item's id: monotonic, so the primary key only ever appends
    item_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)


class DeliveryReceipt(Base):
    """Proof of one publish; unique per item and per idempotency key."""

    __tablename__ = "delivery_receipts"

    # Plain ids, no foreign keys: a receipt outlives its deleted batch (ledger.deletion).
    item_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    batch_id: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    published_url: Mapped[str] = mapped_column(Text, nullable=False)
    receipt: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = _now()


class IdempotencyKey(Base):
    """A remembered external effect; expires after ``BATCH_IDEMPOTENCY_TTL_HOURS``."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # The notifications still to send (ledger/notifications.py): the sweeper's
        # and the exporter's reads touch only these, oldest first.
        Index(
            "ix_idempotency_keys_notify_unsent",
            "created_at",
            postgresql_where=text(UNSENT_SQL),
        ),
    )

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    scope: Mapped[str] = mapped_column(String(32), nullable=False)
    result: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Event(Base):
    """The event log: submissions, finalizes, halts, operator actions."""

    __tablename__ = "events"
    __table_args__ = (
        Index(
            "uq_events_one_finalize",
            "batch_id",
            unique=True,
            postgresql_where=text("kind = 'finalized'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    #: a plain id: the log keeps naming a batch after it is deleted
    batch_id: Mapped[str | None] = mapped_column(String(128), index=True)
    item_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    created_at: Mapped[datetime] = _now()


class Control(Base):
    """A system-wide switch, e.g. ``halt`` after a CRITICAL error; present means on.

    It lives in the ledger, not Redis, so a Redis restart cannot quietly undo a halt,
    and every claim checks it in the same statement that takes the lease.
    """

    __tablename__ = "controls"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, default=dict)
    set_at: Mapped[datetime] = _now()


class Customer(Base):
    """A catalog customer (``pipeline.catalog.CustomerProfile``), upserted by catalog imports."""

    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    tier: Mapped[str] = mapped_column(String(16), nullable=False)
    suspended: Mapped[bool] = mapped_column(nullable=False, default=False)
    updated_at: Mapped[datetime] = _now()


class Publisher(Base):
    """A catalog publisher; ``profile`` holds its whole ``PublisherProfile`` as JSON.

    One JSON document rather than a column per rule: the profile is read whole and
    validated by the model on the way out, so a new rule needs no migration.
    """

    __tablename__ = "publishers"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    profile: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    updated_at: Mapped[datetime] = _now()


class ScheduleWindow(Base):
    """One opened run of a scheduled stage (``pipeline.schedule``): at most one per run.

    The unique ``(stage, run_at)`` makes opening a run idempotent: a second beat, a
    restarted one or a late message inserts nothing. While ``opens_at <= now() <
    closes_at`` the feeder sends the stage's pooled items of the scheduled lanes.
    """

    __tablename__ = "schedule_windows"
    __table_args__ = (UniqueConstraint("stage", "run_at", name="uq_schedule_windows_stage_run"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), nullable=False)
    run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    opens_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    closes_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    #: opened after its own window had passed (beat was down): once, for a full window
    late: Mapped[bool] = mapped_column(nullable=False, default=False)
    opened_by: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = _now()


class ApiKey(Base):
    """An HTTP API key (``pipeline.api_access``): only its salted hash is stored."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    scope: Mapped[str] = mapped_column(String(8), nullable=False)
    #: the projects the key is limited to; empty: every project
    projects: Mapped[list[str]] = mapped_column(JSONB, nullable=False, default=list)
    salt: Mapped[str] = mapped_column(String(64), nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = _now()
    #: set by ``batchline api-key revoke``; a revoked key is refused from then on
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class IntakeOrder(Base):
    """One order accepted alone (``tasks.intake.OrderIntake``), durable before it is acknowledged.

    Pending while ``batch_id`` is NULL; a flush first assigns the rows of one
    (project, priority) group a batch id and commits, then submits that batch and
    sets ``flushed_at``. A crash between the two leaves rows assigned but not
    flushed, and the next flush submits them again under the same id (idempotent).
    ``batch_id`` has no foreign key: it is chosen before the batch exists.
    """

    __tablename__ = "intake_orders"
    __table_args__ = (
        # An order id names one order of a project: a resend is recognised, never doubled.
        UniqueConstraint("project_uuid", "order_id", name="uq_intake_orders_project_order"),
        # "The pending orders of each group, oldest first" as an index scan.
        Index(
            "ix_intake_orders_pending",
            "project_uuid",
            "priority",
            "id",
            postgresql_where=text("batch_id IS NULL"),
        ),
        # Batches assigned but not yet submitted (a flush interrupted by a crash).
        Index(
            "ix_intake_orders_unflushed",
            "batch_id",
            postgresql_where=text("batch_id IS NOT NULL AND flushed_at IS NULL"),
        ),
        Index("ix_intake_orders_order_id", "order_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    project_uuid: Mapped[str] = mapped_column(String(128), nullable=False)
    priority: Mapped[str] = mapped_column(String(8), nullable=False)
    order_id: Mapped[str] = mapped_column(String(128), nullable=False)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    accepted_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )
    #: the batch the order was grouped into (NULL: still pending)
    batch_id: Mapped[str | None] = mapped_column(String(128))
    #: when that batch was submitted (NULL with a batch_id: a flush to finish)
    flushed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
