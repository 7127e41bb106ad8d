"""Fused stage boundaries: when a chunk runs the next stage itself, and for how long.

A chunk of writing may run QC on the items it wrote, in the same task, and record
each item's two outputs with one state change (``WRITING -> APPROVED``, back to
``WRITING`` for a rewrite, or ``FAILED``) instead of QC claiming and recording
them again. Only a next stage that needs nothing the feeder hands out may be
fused: no concurrency slots (uncapped), no window to wait for (not scheduled in
the chunk's lane), no outside calls (no circuit, not I/O-bound), and whose
rewrites come back to the stage that fused it. ``BATCH_FUSE_IN_THREADS=false``
also keeps a chunk in a threads-pool worker from fusing: there the next stage's CPU
work holds the interpreter lock the other chunks' calls need. Both stages are in the chunk's
lane by construction: an item keeps its batch's lane for its whole journey.

Pure: the tasks side (``tasks.fused``) supplies the settings and runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pipeline.stage_registry import Stage, next_stage

#: Fused work stops this long before the chunk's soft time limit at least ...
FUSE_MARGIN_MIN_S: Final = 10.0
#: ... or this share of the limit, whichever is longer: recording the chunk's
#: outcomes, and the calls still under way, need time after the last fused item.
FUSE_MARGIN_SHARE: Final = 0.1


@dataclass(frozen=True)
class FuseRules:
    """What decides whether a boundary may fuse, as the settings say it for one lane."""

    #: ``BATCH_FUSE_STAGES``
    enabled: bool
    #: stages whose items hold concurrency slots (``BATCH_CAPPED_STAGES``)
    capped: frozenset[str]
    #: stages that wait for a window in this lane (``BATCH_SCHEDULE_*``)
    scheduled: frozenset[str]
    #: the chunk runs in a thread beside other chunks' calls (Celery's threads pool) and
    #: ``BATCH_FUSE_IN_THREADS`` is off: it may not fuse
    threaded: bool = False


def fused_stage(stage: Stage, rules: FuseRules) -> Stage | None:
    """The stage a chunk of ``stage`` runs next in the same task, or None (hand on as usual).

    Args:
        stage: the stage the chunk runs.
        rules: the settings that bear on it, for the chunk's lane.
    """
    following = next_stage(stage)
    if not rules.enabled or following is None:
        return None
    if rules.threaded:
        # CPU work here holds the interpreter lock the other threads' calls need to
        # start and end, and they hold their slots meanwhile: with it on, the CPU
        # workers' own chunks run the next stage instead.
        return None
    if following.name in rules.capped or following.name in rules.scheduled:
        return None  # its slots or its window are the feeder's to hand out
    if following.io_bound or following.circuit is not None:
        return None  # it calls others' services: not to be run one after another here
    if following.rewrite_stage not in (None, stage.name):
        return None  # a rewrite would skip back over this stage's record
    return following


def fuse_margin(soft_limit: float) -> float:
    """Seconds before the soft limit at which fused work stops."""
    return max(FUSE_MARGIN_MIN_S, FUSE_MARGIN_SHARE * soft_limit)


def fused_time_left(elapsed: float, soft_limit: float) -> float:
    """Seconds fused work may still start items in a chunk ``elapsed`` seconds old.

    Zero or less: record the rest as the first stage's successes; the next stage
    picks them up from the pool as it would without fusing.
    """
    return soft_limit - fuse_margin(soft_limit) - elapsed
