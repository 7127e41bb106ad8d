"""When a chunk runs the next stage itself (``pipeline.fusing``), and for how long."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.fusing import (
    FUSE_MARGIN_MIN_S,
    FuseRules,
    fuse_margin,
    fused_stage,
    fused_time_left,
)
from pipeline.stage_registry import DELIVERY, PREFLIGHT, QC, STAGES, WRITING, Stage
from pipeline.states import is_legal

#: The defaults: fusing on, writing capped, nothing scheduled.
DEFAULT = FuseRules(enabled=True, capped=frozenset({"writing"}), scheduled=frozenset())


def test_writing_runs_qc_itself_by_default() -> None:
    assert fused_stage(WRITING, DEFAULT) is QC


@pytest.mark.parametrize("stage", [PREFLIGHT, QC, DELIVERY], ids=lambda s: s.name)
def test_no_other_boundary_fuses_by_default(stage: Stage) -> None:
    # preflight -> writing: capped; QC -> delivery: calls publishers; delivery: last
    assert fused_stage(stage, DEFAULT) is None


def test_switched_off_nothing_fuses() -> None:
    rules = replace(DEFAULT, enabled=False)

    assert all(fused_stage(stage, rules) is None for stage in STAGES)


def test_a_capped_qc_is_not_fused() -> None:
    # Its slots are the feeder's to hand out.
    rules = replace(DEFAULT, capped=DEFAULT.capped | {"qc"})

    assert fused_stage(WRITING, rules) is None


def test_a_qc_scheduled_in_the_lane_is_not_fused() -> None:
    # Its items must wait for its window.
    rules = replace(DEFAULT, scheduled=frozenset({"qc"}))

    assert fused_stage(WRITING, rules) is None


def test_a_scheduled_writing_still_fuses_a_continuous_qc() -> None:
    rules = replace(DEFAULT, scheduled=frozenset({"writing"}))

    assert fused_stage(WRITING, rules) is QC


def test_a_stage_that_calls_out_is_never_fused_even_uncapped() -> None:
    # Uncapping delivery does not make QC's chunk publish articles one after another.
    rules = replace(DEFAULT, capped=frozenset())

    assert fused_stage(QC, rules) is None
    assert fused_stage(PREFLIGHT, rules) is None  # writing calls the LLM


def test_every_fused_decision_is_one_legal_move_from_the_first_stage() -> None:
    # approve, fail, or back to the stage that fused it for a rewrite
    for stage in STAGES:
        following = fused_stage(stage, replace(DEFAULT, capped=frozenset()))
        if following is None:
            continue
        back = following.rewrite_stage or following.name
        assert back == stage.name
        for target in (following.success_state, stage.work_state):
            assert is_legal(stage.work_state, target), (stage.name, target)


@pytest.mark.parametrize(
    ("soft", "margin"),
    [(30, FUSE_MARGIN_MIN_S), (100, FUSE_MARGIN_MIN_S), (540, 54.0), (7200, 720.0)],
)
def test_the_margin_is_a_tenth_of_the_limit_but_never_under_the_minimum(
    soft: float, margin: float
) -> None:
    assert fuse_margin(soft) == margin


def test_fused_work_stops_a_margin_before_the_soft_limit() -> None:
    # The default soft limit (540 s) leaves 54 s for the rest of the chunk.
    assert fused_time_left(0.0, 540) == 486.0
    assert fused_time_left(485.0, 540) > 0
    assert fused_time_left(486.0, 540) <= 0
    assert fused_time_left(600.0, 540) < 0


def test_a_chunk_in_a_threads_pool_does_not_fuse() -> None:
    # Its CPU work would hold the interpreter lock the other chunks' calls wait for.
    rules = replace(DEFAULT, threaded=True)

    assert all(fused_stage(stage, rules) is None for stage in STAGES)
