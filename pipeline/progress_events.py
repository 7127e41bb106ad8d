"""A batch's progress as its event streams send it: snapshots, event ids, milestones.

Pure: ``api.events`` reads the Redis hash and sends these. An event id is
``<counted>.<ended>.<status>``: ``counted`` sums every counter (it grows with each
recorded chunk), ``ended`` is how many orders have ended. A client reconnecting with
``Last-Event-ID`` tells the server both, so it is sent no snapshot it already has and
no milestone it has already passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pipeline.stage_registry import STAGE_NAMES
from pipeline.states import FINAL_BATCH_STATUSES
from pipeline.status import Counters, summarize

#: Shares of ended orders (percent) announced as ``milestone`` events.
MILESTONES: Final = (25, 50, 75, 100)
_FINAL: Final = frozenset(status.lower() for status in FINAL_BATCH_STATUSES)


@dataclass(frozen=True)
class Snapshot:
    """What a batch's progress hash (or its status) says at one moment."""

    batch_id: str
    status: str
    total: int
    completed: int
    failed: int
    cancelled: int
    stages: tuple[tuple[str, int, int], ...]
    progress_percentage: float
    success_rate: float | None
    remaining: int
    velocity: float
    estimated_time_remaining: float | None
    eta_human: str

    @property
    def ended(self) -> int:
        """Orders that reached a terminal state."""
        return self.completed + self.failed + self.cancelled

    @property
    def final(self) -> bool:
        """Whether the batch has ended (the stream's last snapshot)."""
        return self.status in _FINAL

    @property
    def counted(self) -> int:
        """The sum of every counter: it grows whenever a chunk is recorded."""
        return self.ended + sum(done + failed for _, done, failed in self.stages)

    @classmethod
    def from_hash(cls, batch_id: str, progress: Mapping[str, str]) -> Snapshot:
        """Read a complete ``batch:progress:<id>`` hash."""

        def number(name: str) -> int:
            return int(float(progress.get(name) or 0))

        counters = Counters(
            total=number("total"),
            completed=number("completed"),
            failed=number("failed"),
            cancelled=number("cancelled"),
            started_at=float(progress.get("started_at") or 0.0),
            updated_at=float(progress.get("finished_at") or progress.get("updated_at") or 0.0),
        )
        status = progress.get("status", "running")
        summary = summarize(counters, finished=status in _FINAL)
        stages = tuple(
            (stage, number(f"{stage}_done"), number(f"{stage}_failed")) for stage in STAGE_NAMES
        )
        return cls(
            batch_id, status, counters.total, counters.completed, counters.failed,
            counters.cancelled, stages, **summary,
        )  # fmt: skip

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Snapshot:
        """Read ``batch_status``'s answer (used when the hash was lost, and at the end)."""
        stages = tuple(
            (stage, int(counts["done"]), int(counts["failed"]))
            for stage, counts in status["stages"].items()
        )
        return cls(
            status["batch_id"], status["status"], status["total"], status["completed"],
            status["failed"], status["cancelled"], stages, status["progress_percentage"],
            status["success_rate"], status["remaining"], status["velocity"],
            status["estimated_time_remaining"], status["eta_human"],
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """The ``progress`` event's data (the fields of ``batch_status``)."""
        return {
            "batch_id": self.batch_id,
            "status": self.status,
            "total": self.total,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "progress_percentage": self.progress_percentage,
            "success_rate": self.success_rate,
            "remaining": self.remaining,
            "velocity": self.velocity,
            "estimated_time_remaining": self.estimated_time_remaining,
            "eta_human": self.eta_human,
            "stages": {stage: {"done": d, "failed": f} for stage, d, f in self.stages},
        }


def event_id(snapshot: Snapshot) -> str:
    """The id of every event sent for ``snapshot``."""
    return f"{snapshot.counted}.{snapshot.ended}.{snapshot.status}"


def parse_event_id(last_event_id: str | None) -> int:
    """How many orders had ended at ``Last-Event-ID`` (0 when absent or not ours)."""
    if not last_event_id:
        return 0
    parts = last_event_id.split(".")
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


def milestones_between(before: int, now: int, total: int) -> list[int]:
    """The milestones (percent) passed when ended orders went from ``before`` to ``now``."""
    if total <= 0:
        return []
    return [p for p in MILESTONES if before * 100 < p * total <= now * 100]


@dataclass(frozen=True)
class StreamEvent:
    """One event of a batch's stream (an SSE event, or a WebSocket message)."""

    id: str
    kind: str
    data: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """The event as one JSON object (the WebSocket's message)."""
        return {"id": self.id, "event": self.kind, "data": self.data}


def events_after(snapshot: Snapshot, sent_id: str | None, ended: int) -> list[StreamEvent]:
    """The events ``snapshot`` makes for a client whose last event was ``sent_id``.

    A ``progress`` unless the client has this very snapshot, a ``milestone`` for each
    share passed since ``ended`` orders had ended, and ``status`` once the batch is final.
    """
    ident = event_id(snapshot)
    events = []
    if ident != sent_id:
        events.append(StreamEvent(ident, "progress", snapshot.as_dict()))
    for percent in milestones_between(ended, snapshot.ended, snapshot.total):
        events.append(
            StreamEvent(ident, "milestone", {"batch_id": snapshot.batch_id, "percent": percent})
        )
    if snapshot.final:
        final = {"batch_id": snapshot.batch_id, "status": snapshot.status}
        events.append(StreamEvent(ident, "status", final))
    return events
