"""The four stages, in order, and the lane names: shared by settings, tasks and CLI."""

from __future__ import annotations

from typing import Final

STAGES: Final[tuple[str, ...]] = ("preflight", "writing", "qc", "delivery")
PRIORITIES: Final[tuple[str, ...]] = ("high", "normal", "low")
