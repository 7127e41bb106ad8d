"""A small submission skips the statistics check: no transaction on its way to the first feed."""

from __future__ import annotations

from typing import Any

import pytest

from tasks import statistics


def test_a_submission_under_the_default_analyze_line_opens_no_transaction(monkeypatch) -> None:
    def no_ledger(*_: Any, **__: Any) -> Any:
        raise AssertionError("the ledger was asked")

    monkeypatch.setattr(statistics, "transaction", no_ledger)

    assert statistics.refresh_statistics("fifty", 50) == []  # the line is > 50


def test_a_submission_past_the_line_is_checked(monkeypatch) -> None:
    def no_ledger(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the ledger was asked")

    monkeypatch.setattr(statistics, "transaction", no_ledger)

    with pytest.raises(RuntimeError, match="the ledger was asked"):
        statistics.refresh_statistics("fifty-one", 51)
