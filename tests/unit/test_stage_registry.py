"""The stage registry and the state sets: every stage and every state placed exactly once."""

from __future__ import annotations

import pytest

from pipeline.stage_registry import (
    STAGE_NAMES,
    STAGES,
    Stage,
    UnknownStage,
    next_stage,
    pooled_kind_sql,
    stage_for_state,
    stage_named,
    stage_task_name,
)
from pipeline.states import (
    OPEN_ITEM_STATES,
    TERMINAL_ITEM_STATES,
    ItemState,
    is_legal,
    open_sql,
    pooled_sql,
    terminal_sql,
)


def test_every_item_state_is_either_open_or_terminal_never_both() -> None:
    # A state added to ItemState without being placed here fails this test: every
    # SQL predicate (open, terminal, pooled) and the pool's partial index are built
    # from these two sets.
    assert set(ItemState) == OPEN_ITEM_STATES | TERMINAL_ITEM_STATES
    assert not OPEN_ITEM_STATES & TERMINAL_ITEM_STATES


def test_every_open_state_is_picked_up_by_exactly_one_stage() -> None:
    for state in OPEN_ITEM_STATES:
        owners = [stage.name for stage in STAGES if state in stage.entry_states]
        assert owners == [stage_for_state(state).name], state


def test_no_stage_claims_a_terminal_state() -> None:
    for stage in STAGES:
        assert not stage.entry_states & TERMINAL_ITEM_STATES, stage.name


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_a_stage_works_in_one_of_its_entry_states(stage: Stage) -> None:
    # The claim moves an item into the work state; a retried claim must find it there.
    assert stage.work_state in stage.entry_states


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_a_stage_reads_only_an_earlier_stage(stage: Stage) -> None:
    if stage.input_stage is not None:
        assert STAGE_NAMES.index(stage.input_stage) < STAGE_NAMES.index(stage.name)


def test_only_the_last_stage_ends_the_order_on_success() -> None:
    assert [stage.terminal_success for stage in STAGES] == [False, False, False, True]
    assert all((next_stage(s) is None) == s.terminal_success for s in STAGES)


def test_a_rewrite_goes_back_to_an_earlier_stage_along_a_legal_move() -> None:
    rewriting = [stage for stage in STAGES if stage.rewrite_stage]
    assert [stage.name for stage in rewriting] == ["qc"]
    for stage in rewriting:
        back = stage_named(stage.rewrite_stage or "")
        assert is_legal(stage.work_state, back.work_state)


def test_chunk_defaults_fit_within_their_maximum() -> None:
    for stage in STAGES:
        assert 1 <= stage.chunk_optimal <= stage.chunk_max, stage.name


def test_the_chunk_sizes_and_the_guides_time_limits_are_the_defaults() -> None:
    # The guide's sizes, but writing's: its calls run concurrently within a chunk.
    sizes = {s.name: (s.chunk_optimal, s.chunk_max, s.scheduled_time_limit) for s in STAGES}
    assert sizes == {
        "preflight": (10, 25, 1800),
        "writing": (25, 50, 7200),
        "qc": (20, 100, 3600),
        "delivery": (50, 200, 1800),
    }


def test_stage_tasks_are_named_after_their_stage() -> None:
    assert [stage.task_name for stage in STAGES] == [
        f"batchline.stage.{name}" for name in STAGE_NAMES
    ]
    assert stage_task_name("qc") == "batchline.stage.qc"


def test_an_unknown_stage_is_named_in_the_error() -> None:
    with pytest.raises(UnknownStage, match="'drafting'"):
        stage_named("drafting")


def test_the_sql_predicates_list_exactly_the_state_sets() -> None:
    for state in ItemState:
        quoted = f"'{state.value}'"
        assert (quoted in terminal_sql()) == (state in TERMINAL_ITEM_STATES)
        assert (quoted in pooled_sql()) == (state in OPEN_ITEM_STATES)
    assert open_sql("i.state") == f"NOT ({terminal_sql('i.state')})"
    assert pooled_sql("i.").startswith("i.queued_at IS NULL AND i.lease_owner IS NULL AND i.")


def test_the_pool_kinds_split_the_open_states_by_whether_their_stage_is_io_bound() -> None:
    for state in ItemState:
        quoted = f"'{state.value}'"
        io_bound = state in OPEN_ITEM_STATES and stage_for_state(state).io_bound
        cpu_bound = state in OPEN_ITEM_STATES and not stage_for_state(state).io_bound
        assert (quoted in pooled_kind_sql(True)) == io_bound, state
        assert (quoted in pooled_kind_sql(False)) == cpu_bound, state
    assert pooled_kind_sql(True, "i.").startswith("i.queued_at IS NULL AND i.lease_owner")


def test_the_pool_index_is_defined_by_the_pooled_predicate() -> None:
    from ledger.models import Item

    indexes = {index.name: index for index in Item.__table__.indexes}  # type: ignore[attr-defined]
    for name, io_bound in (("ix_items_pool_io", True), ("ix_items_pool_cpu", False)):
        where = indexes[name].dialect_options["postgresql"]["where"]
        assert str(where) == pooled_kind_sql(io_bound)
    assert str(indexes["ix_items_open"].dialect_options["postgresql"]["where"]) == open_sql()
