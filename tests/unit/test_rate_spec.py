"""``BATCH_RATE_LIMITS`` parsing: valid entries, and every rejection naming its entry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.limits import RateSpec, RateSpecError, format_rate_limits, parse_rate_limits


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
        ("preflight=100/min:20", "preflight", RateSpec(100.0, 20, False)),
        ("ahrefs=5000/day", "ahrefs", RateSpec(5000 / 1440, 1, False, 0, 5000)),
        ("ahrefs=5000/day:conc=5", "ahrefs", RateSpec(5000 / 1440, 1, False, 5, 5000)),
        ("ahrefs=10/d:conc=2:per-key", "ahrefs", RateSpec(10 / 1440, 1, True, 2, 10)),
        ("serp_api=60/min:conc=3", "serp_api", RateSpec(60.0, 1, False, 3)),
        ("writer=60/min:20:conc=50", "writer", RateSpec(60.0, 20, False, 50)),
        ("delivery=10/s:30:conc=5:per-key", "delivery", RateSpec(600.0, 30, True, 5)),
        (" delivery = 10/s : conc=5 ", "delivery", RateSpec(600.0, 1, False, 5)),
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
        ("writer=60/week", "unknown unit 'week'"),
        ("ahrefs=5000/day:20", "BURST does not apply to a daily quota"),
        ("ahrefs=2.5/day", "daily quota '2.5' is not a whole number"),
        ("ahrefs=0/day", "rate must be positive"),
        ("ahrefs=5000/day:conc=0", "conc must be at least 1"),
        ("ahrefs=5000/day:conc=many", "conc 'many' is not a whole number"),
        ("ahrefs=5000/day:conc=", "conc '' is not a whole number"),
        ("writer=60/min:conc=5:20", "at most BURST, conc=N and per-key"),
        ("writer=60/min:per-key:conc=5", "at most BURST, conc=N and per-key"),
        ("writer=60", "rate must be RATE/UNIT"),
        ("writer=60/min:0", "burst must be at least 1"),
        ("writer=60/min:-2", "burst must be at least 1"),
        ("writer=60/min:2.5", "burst '2.5' is not a whole number"),
        ("writer=60/min:", "burst '' is not a whole number"),
        ("writer=60/min:per-key:20", "at most BURST, conc=N and per-key"),
        ("writer=60/min:5:6", "at most BURST, conc=N and per-key"),
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


def test_the_guide_s_limits_parse_as_one_value() -> None:
    specs = parse_rate_limits("preflight=100/min:20,serp_api=60/min,ahrefs=5000/day:conc=5")

    assert specs["preflight"] == RateSpec(100.0, 20, False)
    assert specs["serp_api"] == RateSpec(60.0, 1, False)
    assert (specs["ahrefs"].per_day, specs["ahrefs"].concurrency) == (5000, 5)


_SERVICES = st.from_regex(r"[a-z][a-z0-9_-]{0,11}", fullmatch=True)
_BUCKETS = st.builds(
    RateSpec,
    per_minute=st.floats(min_value=1e-6, max_value=1e9, allow_nan=False, allow_infinity=False),
    burst=st.integers(1, 10_000),
    per_key=st.booleans(),
    concurrency=st.integers(0, 1000),
)
_QUOTAS = st.builds(
    lambda per_day, per_key, concurrency: RateSpec(
        per_day / 1440, 1, per_key, concurrency, per_day
    ),
    st.integers(1, 10_000_000),
    st.booleans(),
    st.integers(0, 1000),
)


@given(st.dictionaries(_SERVICES, _BUCKETS | _QUOTAS, max_size=5))
def test_formatted_limits_parse_back_to_the_same_specs(specs: dict[str, RateSpec]) -> None:
    assert parse_rate_limits(format_rate_limits(specs)) == specs
