"""``BATCH_RATE_LIMITS`` parsing: valid entries, and every rejection naming its entry."""

from __future__ import annotations

import pytest

from pipeline.limits import RateSpec, RateSpecError, parse_rate_limits


@pytest.mark.parametrize("text", ["", "   ", ",", " , "])
def test_blank_text_means_no_limits(text: str) -> None:
    assert parse_rate_limits(text) == {}


@pytest.mark.parametrize(
    ("text", "service", "spec"),
    [
        ("writer=60/min:20", "writer", RateSpec(60.0, 20, False)),
        ("delivery=10/s:30:per-key", "delivery", RateSpec(600.0, 30, True)),
        ("delivery=10/sec:per-key", "delivery", RateSpec(600.0, 1, True)),
        ("qc=120/h", "qc", RateSpec(2.0, 1, False)),
        ("qc=30/hour:3", "qc", RateSpec(0.5, 3, False)),
        ("fetch-2_x=0.5/s", "fetch-2_x", RateSpec(30.0, 1, False)),
        ("  writer = 60 / min : 20 : per-key  ", "writer", RateSpec(60.0, 20, True)),
    ],
)
def test_valid_entry_is_parsed(text: str, service: str, spec: RateSpec) -> None:
    assert parse_rate_limits(text) == {service: spec}


def test_several_entries_with_spaces_and_a_trailing_comma() -> None:
    specs = parse_rate_limits(" writer=60/min:20 , delivery=10/s:30:per-key ,")

    assert specs == {
        "writer": RateSpec(60.0, 20, False),
        "delivery": RateSpec(600.0, 30, True),
    }


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("writer=0/min", "rate must be positive"),
        ("writer=-5/min", "rate must be positive"),
        ("writer=nan/min", "rate must be positive"),
        ("writer=fast/min", "is not a number"),
        ("writer=60/day", "unknown unit 'day'"),
        ("writer=60", "rate must be RATE/UNIT"),
        ("writer=60/min:0", "burst must be at least 1"),
        ("writer=60/min:-2", "burst must be at least 1"),
        ("writer=60/min:2.5", "burst '2.5' is not a whole number"),
        ("writer=60/min:", "burst '' is not a whole number"),
        ("writer=60/min:per-key:20", "at most BURST and per-key"),
        ("writer=60/min:5:6", "at most BURST and per-key"),
        ("Writer=60/min", "service must match"),
        ("9writer=60/min", "service must match"),
        ("=60/min", "service must match"),
        ("writer 60/min", "expected service=RATE/UNIT"),
    ],
)
def test_bad_entry_is_rejected_naming_the_entry(entry: str, problem: str) -> None:
    with pytest.raises(RateSpecError) as caught:
        parse_rate_limits(f"qc=1/s, {entry}")

    assert str(caught.value).startswith(f"BATCH_RATE_LIMITS entry {entry!r}: ")
    assert problem in str(caught.value)


def test_the_message_reads_as_documented() -> None:
    with pytest.raises(RateSpecError) as caught:
        parse_rate_limits("writer=0/min")

    assert str(caught.value) == "BATCH_RATE_LIMITS entry 'writer=0/min': rate must be positive"


def test_duplicate_service_is_rejected() -> None:
    with pytest.raises(RateSpecError, match=r"entry 'writer=2/s'.*listed twice"):
        parse_rate_limits("writer=60/min,writer=2/s")


def test_rate_spec_error_is_a_value_error() -> None:
    assert issubclass(RateSpecError, ValueError)
