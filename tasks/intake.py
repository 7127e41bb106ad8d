"""``OrderIntake``: take orders one at a time and group them into batches.

Each accepted order is a row of ``intake_orders`` committed before ``submit`` returns,
so a crash loses nothing. A (project, priority) group becomes a batch (through
``submit_batch``) when it holds ``INTAKE_MAX_ORDERS`` orders or its oldest has waited
``INTAKE_MAX_WAIT_SECONDS``. Who flushes by age when no order arrives: the intake's
own thread (every ``INTAKE_FLUSH_INTERVAL_SECONDS``) while it runs, and beat's
``batchline.maintenance.flush_intake`` entry on ``batch.maintenance`` as the backstop
when no intake runs (a crashed client, an idle API). Flushes claim rows with
``FOR UPDATE SKIP LOCKED`` and name the batch after its first row, so any number of
intakes and the beat entry may flush at once without doubling an order.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

from celery_app import app
from ledger import intake as rows
from ledger.db import transaction
from pipeline.manifest import ManifestError, validate_group, validate_order
from pipeline.settings import get_settings
from tasks.submit import submit_batch

log = structlog.get_logger(__name__)


class IntakeConflict(ManifestError):
    """An order id the project already used, sent again with different content."""


class OrderIntake:
    """Accept single orders durably and flush them into batches per (project, priority).

    Args:
        max_orders: group size that flushes at once (default ``INTAKE_MAX_ORDERS``).
        max_wait_seconds: age of a group's oldest order that flushes it
            (default ``INTAKE_MAX_WAIT_SECONDS``).
        background: run a thread that flushes groups due by age; ``close()`` stops it.
    """

    def __init__(
        self,
        max_orders: int | None = None,
        max_wait_seconds: float | None = None,
        *,
        background: bool = True,
    ) -> None:
        settings = get_settings()
        self.max_orders = min(max_orders or settings.intake_max_orders, settings.batch_max_items)
        self.max_wait_seconds = max_wait_seconds or settings.intake_max_wait_seconds
        self._lock = threading.Lock()
        self._flushed = 0
        self._refused = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="order-intake", daemon=True)
            self._thread.start()

    def submit(self, document: Any, project_uuid: Any, priority: Any = None) -> dict[str, Any]:
        """Accept one order; it is in the ledger when this returns.

        Args:
            document: the order (the fields of ``pipeline.manifest.OrderDocument``).
            project_uuid: the project whose batch it joins.
            priority: ``high``, ``normal`` or ``low`` (default ``BATCH_DEFAULT_PRIORITY``).

        Returns:
            The order's intake record (``state`` pending, assigned or flushed,
            ``batch_id`` once it has one) and ``created`` (False: a resend).

        Raises:
            ManifestError: the order is invalid (``document.language: ...``); nothing stored.
            IntakeConflict: the project has an order with this id and other content.
        """
        try:
            return self._accept(document, project_uuid, priority)
        except ManifestError:
            with self._lock:
                self._refused += 1
            raise

    def _accept(self, document: Any, project_uuid: Any, priority: Any) -> dict[str, Any]:
        default = get_settings().batch_default_priority
        project, lane = validate_group(project_uuid, priority if priority is not None else default)
        order = validate_order(document, "document").to_json()
        with transaction() as session:  # committed here: durable before it is acknowledged
            row, created = rows.accept_order(
                session, project_uuid=project, priority=lane, document=order
            )
            full = created and rows.group_size(session, project, lane) >= self.max_orders
        if not created and (row.priority, row.document) != (lane, order):
            raise IntakeConflict(
                "document.order_id",
                f"order {order['order_id']!r} was accepted before with different content",
            )
        if not full:
            return {**row.to_json(), "created": created}
        self._flush_full(project, lane)
        return {**self.lookup_one(project, order["order_id"]), "created": created}

    def _group_full(self, project: str, priority: str) -> bool:
        with transaction() as session:
            return rows.group_size(session, project, priority) >= self.max_orders

    def _flush_full(self, project: str, priority: str) -> None:
        """Flush a full group after an accept; a failure leaves it to the next flush.

        The order is already stored: the caller must hear that it was accepted.
        """
        try:
            self._flush_group(project, priority, only_full=True)
        except Exception as error:
            log.warning("intake.flush_failed", project=project, priority=priority, error=str(error))

    def lookup_one(self, project_uuid: str, order_id: str) -> dict[str, Any]:
        """The project's accepted order ``order_id`` as JSON.

        Raises:
            LookupError: no such order was accepted.
        """
        with transaction() as session:
            row = rows.find_order(session, project_uuid, order_id)
        if row is None:
            raise LookupError(f"no accepted order {order_id!r} in project {project_uuid!r}")
        return row.to_json()

    def lookup(self, order_id: str) -> list[dict[str, Any]]:
        """Every accepted order with ``order_id`` (one per project), pending or flushed."""
        with transaction() as session:
            return [row.to_json() for row in rows.orders_with_id(session, order_id)]

    def flush(self) -> list[str]:
        """Submit every pending order now, whatever its group's size or age; return batch ids."""
        batch_ids = self._finish_unflushed()
        with transaction() as session:
            groups = rows.pending_groups(session)
        for project, priority in groups:
            batch_ids += self._flush_group(project, priority, only_full=False)
        return batch_ids

    def flush_due(self) -> list[str]:
        """Submit the groups due by size or age, and finish flushes a crash interrupted."""
        batch_ids = self._finish_unflushed()
        with transaction() as session:
            due = rows.due_groups(
                session, max_wait_seconds=self.max_wait_seconds, size=self.max_orders
            )
        for project, priority, aged in due:
            batch_ids += self._flush_group(project, priority, only_full=not aged)
        return batch_ids

    def stats(self) -> dict[str, int]:
        """``pending`` (in the ledger, every intake's), ``flushed_batches`` and
        ``refused_orders`` (this intake's since it started)."""
        with transaction() as session:
            pending = rows.pending_count(session)
        with self._lock:
            return {
                "pending": pending,
                "flushed_batches": self._flushed,
                "refused_orders": self._refused,
            }

    def close(self) -> list[str]:
        """Stop the background thread and flush what is pending; return the batch ids."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self.flush()

    def _flush_group(self, project: str, priority: str, *, only_full: bool) -> list[str]:
        """Assign and submit the group's orders, ``max_orders`` per batch.

        ``only_full`` stops before a batch smaller than ``max_orders`` (a flush by size).
        """
        batch_ids: list[str] = []
        while not only_full or self._group_full(project, priority):
            with transaction() as session:
                batch_id = rows.assign_group(session, project, priority, self.max_orders)
            if batch_id is None:
                break
            if self._submit_assigned(batch_id):
                batch_ids.append(batch_id)
        return batch_ids

    def _finish_unflushed(self) -> list[str]:
        with transaction() as session:
            stranded = rows.unflushed_batches(session)
        return [batch_id for batch_id in stranded if self._submit_assigned(batch_id)]

    def _submit_assigned(self, batch_id: str) -> bool:
        """Submit an assigned batch and stamp its rows; False if another intake has it.

        The rows stay locked while ``submit_batch`` runs, so a second intake skips them;
        if this process dies first, the lock goes with its connection and the next
        flush submits the same id again, which ``submit_batch`` recognises.
        """
        with transaction() as session:
            assigned = rows.lock_assigned(session, batch_id)
            if not assigned:
                return False
            first = assigned[0]
            documents = [row.document for row in assigned]
            submit_batch(documents, first.project_uuid, first.priority, {"batch_id": batch_id})
            rows.mark_flushed(session, batch_id)
        with self._lock:
            self._flushed += 1
        log.info("intake.flushed", batch_id=batch_id, orders=len(documents))
        return True

    def _run(self) -> None:
        interval = get_settings().intake_flush_interval_seconds
        while not self._stop.wait(interval):
            try:
                self.flush_due()
            except Exception as error:  # the thread outlives a bad moment; the next turn retries
                log.warning("intake.flush_failed", error=str(error))


@app.task(name="batchline.maintenance.flush_intake", ignore_result=True)
def flush_intake() -> list[str]:
    """Beat's backstop: flush the groups due by age when no intake process is running."""
    return OrderIntake(background=False).flush_due()
