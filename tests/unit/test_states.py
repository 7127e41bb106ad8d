"""Item states: the transition table, how a batch ends, and random walks through the machine."""

from __future__ import annotations

import itertools
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.stage_registry import STAGES, Stage, next_stage
from pipeline.states import (
    FINAL_BATCH_STATUSES,
    TERMINAL_ITEM_STATES,
    TRANSITIONS,
    BatchStatus,
    IllegalTransition,
    ItemState,
    check_transition,
    final_batch_status,
    is_legal,
)

S = ItemState

# The moves the batch guide allows, written out by hand so the table is checked
# against the specification rather than against itself.
EXPECTED_MOVES = {
    (S.PENDING, S.PREFLIGHT),
    (S.PENDING, S.CANCELLED),
    (S.PREFLIGHT, S.WRITING),
    (S.PREFLIGHT, S.FAILED),
    (S.WRITING, S.QC),
    (S.WRITING, S.FAILED),
    # A writing chunk that ran QC itself records QC's decision from WRITING
    # (pipeline.fusing): approved, or back to writing for a rewrite.
    (S.WRITING, S.APPROVED),
    (S.WRITING, S.WRITING),
    (S.QC, S.APPROVED),
    (S.QC, S.WRITING),
    (S.QC, S.FAILED),
    (S.APPROVED, S.DELIVERED),
    (S.APPROVED, S.FAILED),
    (S.FAILED, S.PENDING),
    # Cancelling a batch ends orders waiting between stages too (docs/architecture.md).
    (S.PREFLIGHT, S.CANCELLED),
    (S.WRITING, S.CANCELLED),
    (S.QC, S.CANCELLED),
    (S.APPROVED, S.CANCELLED),
}
ALL_PAIRS = list(itertools.product(ItemState, ItemState))
ILLEGAL_PAIRS = [pair for pair in ALL_PAIRS if pair not in EXPECTED_MOVES]
DEAD_ENDS = {S.DELIVERED, S.CANCELLED}


# --- the table ------------------------------------------------------------------------


def test_table_has_an_entry_for_every_state_and_only_item_states_as_targets() -> None:
    assert set(TRANSITIONS) == set(ItemState)
    for targets in TRANSITIONS.values():
        assert all(isinstance(target, ItemState) for target in targets)


def test_table_holds_exactly_the_documented_moves() -> None:
    table = {(current, target) for current, targets in TRANSITIONS.items() for target in targets}

    assert table == EXPECTED_MOVES


@pytest.mark.parametrize(("current", "target"), sorted(EXPECTED_MOVES))
def test_every_legal_move_passes_check_transition(current: ItemState, target: ItemState) -> None:
    assert is_legal(current, target)
    check_transition(current, target)  # does not raise


@pytest.mark.parametrize(("current", "target"), ILLEGAL_PAIRS)
def test_every_other_move_raises_illegal_transition(current: ItemState, target: ItemState) -> None:
    assert not is_legal(current, target)
    with pytest.raises(IllegalTransition):
        check_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.PENDING, S.DELIVERED),  # skipping every stage
        (S.PENDING, S.WRITING),
        (S.WRITING, S.PREFLIGHT),  # going backwards other than QC -> WRITING
        (S.APPROVED, S.WRITING),
        (S.QC, S.PENDING),
        (S.FAILED, S.WRITING),  # recovery restarts from the beginning
        (S.FAILED, S.DELIVERED),
        (S.DELIVERED, S.PENDING),  # terminal states never move
        (S.CANCELLED, S.PENDING),
        (S.FAILED, S.CANCELLED),  # a failed order stays failed when its batch is cancelled
        (S.QC, S.QC),  # no self-loops
    ],
)
def test_illegal_transition_message_names_both_states(
    current: ItemState, target: ItemState
) -> None:
    with pytest.raises(IllegalTransition, match=f"{current} -> {target}"):
        check_transition(current, target)


def test_illegal_transition_is_a_value_error() -> None:
    assert issubclass(IllegalTransition, ValueError)


@pytest.mark.parametrize("state", sorted(DEAD_ENDS))
def test_delivered_and_cancelled_have_no_exits(state: ItemState) -> None:
    assert TRANSITIONS[state] == frozenset()
    for target in ItemState:
        assert not is_legal(state, target)


def test_failed_can_only_return_to_pending() -> None:
    assert TRANSITIONS[S.FAILED] == frozenset({S.PENDING})


def test_qc_can_send_an_order_back_to_writing() -> None:
    check_transition(S.QC, S.WRITING)


def test_every_working_state_can_fail() -> None:
    for state in (S.PREFLIGHT, S.WRITING, S.QC, S.APPROVED):
        assert is_legal(state, S.FAILED)


def test_terminal_item_states_are_delivered_failed_and_cancelled() -> None:
    assert frozenset({S.DELIVERED, S.FAILED, S.CANCELLED}) == TERMINAL_ITEM_STATES


def _reachable_from(start: ItemState) -> set[ItemState]:
    seen = {start}
    queue = deque([start])
    while queue:
        for target in TRANSITIONS[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def test_every_state_is_reachable_from_pending() -> None:
    assert _reachable_from(S.PENDING) == set(ItemState)


@pytest.mark.parametrize("state", sorted(ItemState))
def test_no_state_is_a_trap_every_state_can_still_end(state: ItemState) -> None:
    assert _reachable_from(state) & DEAD_ENDS


# --- stages and the table -------------------------------------------------------------


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_each_stage_success_is_a_legal_move_from_its_work_state(stage: Stage) -> None:
    check_transition(stage.work_state, stage.success_state)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_each_stage_failure_is_a_legal_move_from_its_work_state(stage: Stage) -> None:
    check_transition(stage.work_state, S.FAILED)


@pytest.mark.parametrize("stage", STAGES[:-1], ids=lambda s: s.name)
def test_a_stage_success_is_the_state_the_next_stage_works_on(stage: Stage) -> None:
    following = next_stage(stage)
    assert following is not None

    assert stage.success_state == following.work_state


def test_following_next_stage_from_preflight_visits_the_stages_in_order_and_ends() -> None:
    visited: list[Stage] = []
    stage: Stage | None = STAGES[0]
    while stage is not None:
        visited.append(stage)
        stage = next_stage(stage)

    assert tuple(visited) == STAGES


def test_the_last_stage_delivers() -> None:
    assert next_stage(STAGES[-1]) is None
    assert STAGES[-1].success_state == S.DELIVERED and STAGES[-1].terminal_success


def test_pending_leads_into_the_first_stage() -> None:
    check_transition(S.PENDING, STAGES[0].work_state)


# --- how a batch ends -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("delivered", "failed", "cancelled", "expected"),
    [
        (10, 0, 0, BatchStatus.COMPLETED),
        (1, 0, 0, BatchStatus.COMPLETED),
        (0, 0, 0, BatchStatus.COMPLETED),  # nothing failed
        (0, 10, 0, BatchStatus.FAILED),
        (0, 1, 0, BatchStatus.FAILED),
        (9, 1, 0, BatchStatus.PARTIAL),
        (1, 9, 0, BatchStatus.PARTIAL),
        (5, 0, 1, BatchStatus.CANCELLED),  # any cancelled item wins
        (0, 5, 1, BatchStatus.CANCELLED),
        (3, 3, 3, BatchStatus.CANCELLED),
        (0, 0, 7, BatchStatus.CANCELLED),
    ],
)
def test_final_batch_status_follows_the_terminal_counts(
    delivered: int, failed: int, cancelled: int, expected: BatchStatus
) -> None:
    assert final_batch_status(delivered, failed, cancelled) is expected


@settings(deadline=None, database=None)
@given(
    delivered=st.integers(0, 10**6), failed=st.integers(0, 10**6), cancelled=st.integers(0, 10**6)
)
def test_final_batch_status_is_always_a_final_status(
    delivered: int, failed: int, cancelled: int
) -> None:
    assert final_batch_status(delivered, failed, cancelled) in FINAL_BATCH_STATUSES


# --- random walks ---------------------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_a_random_walk_of_legal_moves_stays_in_item_state_and_stops_only_at_the_end(
    data: st.DataObject,
) -> None:
    # Given an item that starts PENDING
    state = S.PENDING
    # When it takes up to 60 random legal moves
    for _ in range(60):
        assert isinstance(state, ItemState)
        exits = sorted(TRANSITIONS[state])
        if not exits:
            break
        target = data.draw(st.sampled_from(exits))
        check_transition(state, target)
        state = target
    # Then a state with no exits is DELIVERED or CANCELLED, and it cannot move again
    if not TRANSITIONS[state]:
        assert state in DEAD_ENDS
        for target in ItemState:
            with pytest.raises(IllegalTransition):
                check_transition(state, target)


@settings(deadline=None, database=None)
@given(
    path=st.lists(st.sampled_from(sorted(ItemState)), min_size=1, max_size=30),
)
def test_a_walk_is_legal_exactly_when_each_step_is_in_the_table(path: list[ItemState]) -> None:
    steps = list(itertools.pairwise([S.PENDING, *path]))
    all_legal = all((current, target) in EXPECTED_MOVES for current, target in steps)

    try:
        for current, target in steps:
            check_transition(current, target)
    except IllegalTransition:
        assert not all_legal
    else:
        assert all_legal
