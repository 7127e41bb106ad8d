"""One benchmark run's figures, and the JSON file that keeps them all."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class RunResult:
    """The figures of one scenario at one size.

    Attributes:
        scenario: "A", "B", "C", "D", "priority", "fairness", ...
        orders: orders submitted.
        seconds: processing time, from releasing the workers to the last order done.
        items_per_s: orders / seconds.
        submit_seconds: time to publish every order (nothing consuming).
        submitter_rss_mb: peak RSS of the submitting process.
        worker_rss_mb: peak of the summed RSS of every worker process tree.
        redis_bytes_per_order: growth of Redis ``used_memory`` per queued order.
        extra: anything scenario-specific (the report renders it generically).
    """

    scenario: str
    orders: int
    seconds: float
    items_per_s: float
    submit_seconds: float
    submitter_rss_mb: float
    worker_rss_mb: float
    redis_bytes_per_order: float
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """Build a result from its JSON form, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class Results:
    """The results file: ``{"meta": {...}, "runs": [RunResult, ...]}``."""

    meta: dict[str, Any] = field(default_factory=dict)
    runs: list[RunResult] = field(default_factory=list)

    def save(self, path: Path) -> None:
        """Write the file atomically (a crash mid-write keeps the previous version)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"meta": self.meta, "runs": [asdict(run) for run in self.runs]}
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> Results:
        """Read a results file written by :meth:`save`."""
        data = json.loads(path.read_text())
        return cls(
            meta=dict(data.get("meta", {})), runs=[RunResult.from_dict(r) for r in data["runs"]]
        )
