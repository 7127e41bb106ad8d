"""A chunk's retries, deferrals and limit waits: noted, counted into fields, folded back."""

from __future__ import annotations

import pytest

from metrics.batch_waits import chunk_fields, fold_waits
from pipeline.errors import RateLimited, TransientError
from pipeline.outcomes import Deferred, Done, Retry, out_of_time, outcome_of_error
from pipeline.pacing import SLOT_POLL_SECONDS, paced
from pipeline.wait_tally import WaitTally, note_wait, tallying
from tests.unit.test_pacing import ScriptedCallGate


def test_a_retry_carries_its_reason_code_and_category() -> None:
    retry = outcome_of_error(1, TransientError("down", code="webhook_status_503"), 1, 3)
    deferral = outcome_of_error(2, RateLimited("429", 5.0, code="webhook_status_429"), 1, 3)

    assert isinstance(retry, Retry) and isinstance(deferral, Retry)
    assert (retry.code, retry.category) == ("webhook_status_503", "TRANSIENT")
    assert (deferral.code, deferral.category) == ("webhook_status_429", "RATE_LIMIT")
    assert [
        (r.code if isinstance(r, Retry) else None) for r in out_of_time([], [7], max_retries=3)
    ] == ["soft_time_limit"]


def test_chunk_fields_split_retries_from_deferrals_by_cause() -> None:
    outcomes = [
        Done(1, {}),
        outcome_of_error(2, TransientError("down", code="webhook_status_503"), 1, 3),
        outcome_of_error(3, TransientError("down", code="webhook_status_503"), 2, 3),
        outcome_of_error(4, TimeoutError("slow"), 1, 3),
        outcome_of_error(5, RateLimited("429", 5.0, code="webhook_status_429"), 1, 3),
        Deferred(6, "publisher:a.example", 0.0),
    ]

    fields = chunk_fields("delivery", outcomes, 2, {"rate": (3, 1500)})

    assert fields == {
        "retry:delivery:webhook_status_503": 2,
        "retry:delivery:timeout_error": 1,
        "defer:delivery:rate_limit": 1,
        "defer:delivery:circuit": 1,
        "defer:delivery:slots": 2,
        "wait:delivery:rate:n": 3,
        "wait:delivery:rate:ms": 1500,
    }
    assert chunk_fields("writing", [Done(1, {})], 0, {}) == {}


def test_fold_waits_gives_the_report_figures_in_stage_order() -> None:
    raw = {
        "retry:delivery:webhook_status_503": "2",
        "retry:writing:timeout_error": "1",
        "retry:delivery:timeout_error": "1",
        "defer:delivery:rate_limit": "4",
        "defer:writing:slots": "1",
        "wait:delivery:rate:n": "3",
        "wait:delivery:rate:ms": "1500",
        "wait:writing:slot:n": "1",
        "wait:writing:slot:ms": "50",
        "something:else": "9",  # an unknown field is ignored
        "wait:writing:nap:ms": "9",
    }

    folded = fold_waits(raw)

    assert folded["retries"] == {
        "total": 4,
        "by_code": {"webhook_status_503": 2, "timeout_error": 2},
        "by_stage": {
            "writing": {"timeout_error": 1},
            "delivery": {"timeout_error": 1, "webhook_status_503": 2},
        },
    }
    assert folded["deferrals"] == {
        "total": 5,
        "by_cause": {"rate_limit": 4, "slots": 1},
        "by_stage": {"writing": {"slots": 1}, "delivery": {"rate_limit": 4}},
    }
    assert list(folded["limit_waits"]) == ["writing", "delivery"]
    assert folded["limit_waits"]["delivery"] == {
        "slot_waits": 0, "slot_wait_ms": 0, "rate_waits": 3, "rate_wait_ms": 1500,
    }  # fmt: skip
    assert folded["limit_waits"]["writing"]["slot_wait_ms"] == 50


def test_a_lost_hash_folds_to_zeros() -> None:
    assert fold_waits({}) == {
        "retries": {"total": 0, "by_code": {}, "by_stage": {}},
        "deferrals": {"total": 0, "by_cause": {}, "by_stage": {}},
        "limit_waits": {},
    }


def test_pacing_notes_its_sleeps_in_the_open_tally_only() -> None:
    gate = ScriptedCallGate(holds=[False, False, True], waits=[0.25, 0.5])
    tally = WaitTally()
    with (
        tallying(tally),
        paced(gate, "writer", max_wait=5.0, lease_seconds=30, sleep=lambda _: None),
    ):
        pass
    note_wait("rate", 1.0)  # outside any tally: goes nowhere

    assert tally.totals() == {
        "slot": (1, round(2 * SLOT_POLL_SECONDS * 1000)),
        "rate": (1, 750),
    }


def test_a_wait_that_gives_up_is_noted_before_the_deferral() -> None:
    gate = ScriptedCallGate(holds=[True], waits=[0.5, 2.0])
    tally = WaitTally()
    with (
        tallying(tally),
        pytest.raises(RateLimited),
        paced(gate, "writer", max_wait=1.0, lease_seconds=30, sleep=lambda _: None),
    ):
        pass

    assert tally.totals() == {"rate": (1, 500)}


def test_the_reports_waits_put_limit_waits_beside_the_pool_waits() -> None:
    from metrics.collector import _with_limit_waits

    pool = {"delivery": {"runs": 4, "p50_s": 1.0, "p95_s": 2.0, "max_s": 2.0, "total_s": 5.0}}
    limits = fold_waits({"wait:writing:slot:n": "2", "wait:writing:slot:ms": "100"})

    waits = _with_limit_waits(pool, limits["limit_waits"])

    assert list(waits) == ["writing", "delivery"]  # pipeline order
    assert waits["delivery"] == {
        **pool["delivery"], "slot_waits": 0, "slot_wait_ms": 0, "rate_waits": 0, "rate_wait_ms": 0,
    }  # fmt: skip
    assert waits["writing"]["runs"] == 0 and waits["writing"]["slot_wait_ms"] == 100
