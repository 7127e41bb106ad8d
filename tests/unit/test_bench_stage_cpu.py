"""bench.stage_cpu runs every step it times, before and after, on real sample inputs."""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.stage_cpu import build_cases, measure, render, steps


def _plain(result: Any) -> Any:
    """A check's result as a tuple: the two modules' result classes are not the same class."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.astuple(result)
    return result


def test_every_step_runs_and_the_compared_ones_agree() -> None:
    # Given two sample orders with their prompts and offline articles
    cases = build_cases(2)
    assert all(case.article["word_count"] > 300 for case in cases)

    # Then each compared step gives the same result before and after
    compared = {name: pair for name, pair in steps(cases).items() if len(pair) == 2}
    assert {"lix", "language", "minhash", "judge (whole QC)"} <= set(compared)
    for name, (now, before) in compared.items():
        if name in {"parse", "facts (all of the above)"}:
            continue  # parser objects and facts of two modules' classes: compared elsewhere
        results = [(_plain(now(case)), _plain(before(case))) for case in cases]
        assert all(new == old for new, old in results), name

    # and the table lists every step with a ratio where there is a before
    table = render(measure(cases, repeat=1, rounds=1), cases)
    assert "| judge (whole QC) |" in table and table.count("|---|") == 1
    assert all(f"| {name} |" in table for name in steps(cases))


def test_prose_cases_carry_docs_text_and_compare_alike() -> None:
    # Given two sample orders whose articles are docs prose instead of the phrase book's
    cases = build_cases(2, prose=True)
    assert all("<h1>Notes</h1>" in case.article["html"] for case in cases)
    assert cases[0].article["html"] != cases[1].article["html"]

    # Then the judgement before and after agrees on them too
    judge = steps(cases)["judge (whole QC)"]
    assert [judge[0](case) for case in cases] == [judge[1](case) for case in cases]
