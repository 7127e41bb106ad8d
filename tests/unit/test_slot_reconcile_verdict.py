"""Which slot holders the sweeper's reconciliation keeps, given what it asked the ledger."""

from __future__ import annotations

from recovery.slots import holder_is_live


def test_a_holder_that_came_after_the_ledger_was_asked_keeps_its_slot() -> None:
    # Item 7 took its writing slot after the holders were read and the ledger asked
    assert holder_is_live("7:writing", asked={3}, active={3: "WRITING"})


def test_a_holder_the_ledger_says_runs_that_stage_keeps_its_slot() -> None:
    assert holder_is_live("3:writing", asked={3}, active={3: "WRITING"})
    assert holder_is_live("4:delivery", asked={4}, active={4: "APPROVED"})


def test_a_holder_whose_item_no_longer_runs_that_stage_loses_its_slot() -> None:
    # Asked about, and the ledger says: moved on, or not queued nor leased any more
    assert not holder_is_live("3:writing", asked={3}, active={3: "QC"})
    assert not holder_is_live("5:writing", asked={5}, active={})
    assert not holder_is_live("6:no-such-stage", asked={6}, active={6: "WRITING"})
