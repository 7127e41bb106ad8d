"""Settings: the documented defaults, and a bad variable stops start-up by name.

``get_settings`` is cached, and integration fixtures put ``REDIS_URL`` and
``DATABASE_URL`` into ``os.environ`` for the whole session: every test here
changes the environment only through ``monkeypatch`` (undone afterwards) and
clears the cache before and after, so no other test sees these settings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import Settings, SettingsError, get_settings, sqlalchemy_url
from pipeline.stage_registry import STAGE_NAMES

_OUR_PREFIXES = ("BATCH_", "REDIS_PREFIX_", "CELERY_WORKER_", "LOG_")


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Start each test from documented defaults: hide our variables, empty the cache."""
    for name in list(os.environ):
        if name.upper().startswith(_OUR_PREFIXES):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


# --- defaults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("batch_max_items", 100_000),
        ("batch_metrics_ttl_days", 7),
        ("batch_cache_warm_threshold", 5),
        ("celery_worker_max_tasks_per_child", 0),
        ("celery_worker_max_memory_per_child", 400_000),
        ("batch_default_priority", "normal"),
        ("redis_prefix_batch", "batch:"),
        ("redis_prefix_metrics", "metrics:"),
        ("batch_output_dir", Path("var/outbox")),
        ("batch_task_soft_time_limit", 540),
        ("batch_task_time_limit", 600),
        ("batch_visibility_timeout", 1800),
        ("batch_lease_seconds", 660),
        ("batch_worker_concurrency", 1),
        ("batch_io_worker_processes", 2),
        ("log_level", "INFO"),
        ("log_format", "console"),
    ],
)
def test_a_default_matches_the_documented_value(attribute: str, expected: object) -> None:
    assert getattr(get_settings(), attribute) == expected


@pytest.mark.parametrize(
    ("stage", "optimal", "maximum"),
    [("preflight", 10, 25), ("writing", 25, 50), ("qc", 20, 100), ("delivery", 50, 200)],
)
def test_default_chunk_sizes_match_the_documented_values(
    stage: str, optimal: int, maximum: int
) -> None:
    settings = get_settings()

    assert settings.chunk_optimal(stage) == optimal
    assert settings.chunk_max(stage) == maximum


def test_every_stage_has_chunk_settings() -> None:
    settings = get_settings()

    for stage in STAGE_NAMES:
        assert 1 <= settings.chunk_optimal(stage) <= settings.chunk_max(stage)


def test_get_settings_is_cached_until_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    first = get_settings()
    monkeypatch.setenv("BATCH_MAX_ITEMS", "10")

    assert get_settings() is first
    get_settings.cache_clear()
    assert get_settings().batch_max_items == 10


# --- values from the environment ------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("BATCH_MAX_ITEMS", "500", "batch_max_items", 500),
        ("BATCH_DEFAULT_PRIORITY", "high", "batch_default_priority", "high"),
        ("BATCH_CHUNK_QC_OPTIMAL", "100", "batch_chunk_qc_optimal", 100),
        ("REDIS_PREFIX_BATCH", "tenant-a:batch:", "redis_prefix_batch", "tenant-a:batch:"),
        ("batch_metrics_ttl_days", "30", "batch_metrics_ttl_days", 30),  # names ignore case
    ],
)
def test_a_good_value_from_the_environment_is_used(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, attribute: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)

    assert getattr(get_settings(), attribute) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BATCH_MAX_ITEMS", "abc"),
        ("BATCH_MAX_ITEMS", "0"),
        ("BATCH_DEFAULT_PRIORITY", "urgent"),
        ("BATCH_METRICS_TTL_DAYS", "366"),
        ("CELERY_WORKER_MAX_MEMORY_PER_CHILD", "100"),
        ("REDIS_PREFIX_BATCH", ""),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_a_bad_value_raises_settings_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as caught:
        get_settings()

    message = str(caught.value)
    assert message.startswith("invalid configuration: ")
    assert f"{variable}: " in message
    assert repr(value) in message


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        (
            {"BATCH_CHUNK_QC_OPTIMAL": "500"},
            "BATCH_CHUNK_QC_OPTIMAL must not exceed BATCH_CHUNK_QC_MAX",
        ),
        (
            {"BATCH_CHUNK_WRITING_MAX": "4"},
            "BATCH_CHUNK_WRITING_OPTIMAL must not exceed BATCH_CHUNK_WRITING_MAX",
        ),
        (
            {"BATCH_VISIBILITY_TIMEOUT": "500"},
            "BATCH_VISIBILITY_TIMEOUT must exceed BATCH_TASK_TIME_LIMIT",
        ),
        (
            {"BATCH_VISIBILITY_TIMEOUT": "600"},
            "BATCH_VISIBILITY_TIMEOUT must exceed BATCH_TASK_TIME_LIMIT",
        ),
        (
            {"BATCH_TASK_SOFT_TIME_LIMIT": "600"},
            "BATCH_TASK_SOFT_TIME_LIMIT must be below BATCH_TASK_TIME_LIMIT",
        ),
        ({"BATCH_LEASE_SECONDS": "600"}, "BATCH_LEASE_SECONDS must exceed BATCH_TASK_TIME_LIMIT"),
        # A call may start just before the soft limit (540 s) and last its HTTP timeout:
        # a killed worker cannot end it, so its item's lease must outlast it.
        (
            {"WRITER_TIMEOUT_SECONDS": "120"},
            "BATCH_LEASE_SECONDS must exceed the writing stage's soft time limit"
            r" \+ WRITER_TIMEOUT_SECONDS \(660 s\)",
        ),
        (
            {"DELIVERY_TIMEOUT_SECONDS": "200", "BATCH_LEASE_SECONDS": "700"},
            "BATCH_LEASE_SECONDS must exceed the delivery stage's soft time limit"
            r" \+ DELIVERY_TIMEOUT_SECONDS \(740 s\)",
        ),
        (
            {"WRITER_TIMEOUT_SECONDS": "120", "BATCH_VISIBILITY_TIMEOUT": "650"},
            "BATCH_VISIBILITY_TIMEOUT must exceed the writing stage's soft time limit",
        ),
    ],
)
def test_a_value_that_breaks_a_rule_between_variables_names_them(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], named: str
) -> None:
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError, match=named):
        get_settings()


def test_raising_the_time_limit_needs_the_visibility_timeout_and_lease_raised_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATCH_TASK_TIME_LIMIT", "2000")
    with pytest.raises(SettingsError, match="BATCH_VISIBILITY_TIMEOUT"):
        get_settings()

    monkeypatch.setenv("BATCH_VISIBILITY_TIMEOUT", "2400")
    monkeypatch.setenv("BATCH_LEASE_SECONDS", "2100")
    get_settings.cache_clear()

    assert get_settings().batch_task_time_limit == 2000


def test_a_bad_value_is_not_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_MAX_ITEMS", "abc")
    with pytest.raises(SettingsError):
        get_settings()

    monkeypatch.setenv("BATCH_MAX_ITEMS", "7")

    assert get_settings().batch_max_items == 7


# --- URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://user@host:5432/db", "postgresql+psycopg://user@host:5432/db"),
        ("postgres://user:pw@host/db", "postgresql+psycopg://user:pw@host/db"),
        ("postgresql+psycopg://user@host/db", "postgresql+psycopg://user@host/db"),
        ("postgresql+psycopg2://user@host/db", "postgresql+psycopg2://user@host/db"),
        ("sqlite:///var/ledger.db", "sqlite:///var/ledger.db"),
    ],
)
def test_sqlalchemy_url_points_plain_postgres_urls_at_psycopg_3(url: str, expected: str) -> None:
    assert sqlalchemy_url(url) == expected


def test_sqlalchemy_url_only_rewrites_the_scheme() -> None:
    url = "postgresql://u@h/db?options=postgresql://x"

    assert sqlalchemy_url(url) == "postgresql+psycopg://u@h/db?options=postgresql://x"


def test_require_redis_url_returns_the_configured_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/3")

    assert get_settings().require_redis_url() == "redis://cache.internal:6379/3"


@pytest.mark.parametrize("value", [None, ""])
def test_require_redis_url_says_it_is_missing(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("REDIS_URL", raising=False)
    else:
        monkeypatch.setenv("REDIS_URL", value)

    with pytest.raises(SettingsError, match="REDIS_URL is not set"):
        get_settings().require_redis_url()


def test_require_database_url_returns_a_psycopg_3_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://batch@db.internal/ledger")

    assert get_settings().require_database_url() == "postgresql+psycopg://batch@db.internal/ledger"


@pytest.mark.parametrize("value", [None, ""])
def test_require_database_url_says_it_is_missing(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", value)

    with pytest.raises(SettingsError, match="DATABASE_URL is not set"):
        get_settings().require_database_url()


def test_settings_built_directly_do_not_touch_the_cache() -> None:
    settings = Settings(redis_url=None, database_url=None)

    with pytest.raises(SettingsError):
        settings.require_redis_url()
    assert get_settings.cache_info().currsize == 0


@pytest.mark.parametrize("value", ["fast", "5/day", "10/min:5:conc=2", "10/min:5:per-key"])
def test_api_submit_rate_takes_a_token_bucket_only(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("API_SUBMIT_RATE", value)
    with pytest.raises(SettingsError, match="API_SUBMIT_RATE"):
        get_settings()


def test_api_submit_rate_parses_to_a_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_SUBMIT_RATE", "30/min:5")
    spec = get_settings().api_submit_spec()
    assert (spec.per_minute, spec.burst) == (30.0, 5)
