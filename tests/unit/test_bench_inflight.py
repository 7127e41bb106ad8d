"""Calls in flight from a log of intervals, and the mock writer reading a real prompt."""

from __future__ import annotations

import pytest

from bench.inflight import in_flight, peak_in_flight, series
from bench.mock_services import PromptError, read_prompt
from bench.realistic_config import RealisticRun, parse_env, parse_runs
from pipeline.writers.openai_compat import user_message


def test_calls_that_touch_do_not_overlap() -> None:
    # A slot handed from one call to the next at the same instant is one call in flight.
    assert peak_in_flight([(0.0, 1.0), (1.0, 2.0)]) == 1
    assert peak_in_flight([(0.0, 1.5), (1.0, 2.0), (1.2, 1.3)]) == 3


def test_mean_is_time_weighted_over_the_window() -> None:
    figures = in_flight([(0.0, 2.0), (0.0, 1.0)], window=(0.0, 4.0))
    assert figures.peak == 2
    assert figures.mean == pytest.approx(0.75)
    assert figures.window_s == 4.0


def test_series_spreads_each_call_over_its_bins() -> None:
    assert series([(0.5, 2.0)], origin=0.0, bin_s=1.0, bins=3) == [0.5, 1.0, 0.0]


def test_mock_writer_reads_what_the_openai_writer_asks() -> None:
    brief = {
        "topic": "dental care",
        "language": "en",
        "target_words": 650,
        "min_words": 450,
        "max_words": 900,
        "anchor_text": "Bright & Smile",
        "target_url": "https://brightsmile.example/care?a=1&b=2",
        "publisher_domain": "healthyliving.co.uk",
        "tone": "informative",
    }
    order, prompt, feedback = read_prompt(user_message(brief, ["shorten it by 50 words"]))
    assert (order.topic, order.language, order.anchor_text) == (
        "dental care",
        "en",
        "Bright & Smile",
    )
    assert str(order.target_url) == brief["target_url"]
    assert (prompt["min_words"], prompt["max_words"]) == (450, 900)
    assert feedback == ["shorten it by 50 words"]


def test_mock_writer_refuses_a_prompt_without_a_link() -> None:
    with pytest.raises(PromptError):
        read_prompt("Write an article about tea in English (language code en).")


def test_e_runs_and_settings_parse() -> None:
    assert parse_runs("2:2000, 10:500") == [RealisticRun(2.0, 2000), RealisticRun(10.0, 500)]
    assert parse_env(["BATCH_CAP_GLOBAL=8"]) == {"BATCH_CAP_GLOBAL": "8"}
    for bad in ("2", "0:10", "2:0", "x:1", ""):
        with pytest.raises(ValueError):
            parse_runs(bad)
