"""docs/monitoring.md's Redis table and ``metrics/keys.py`` agree: every builder, every key."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from metrics import keys
from pipeline.settings import get_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "monitoring.md"
#: A key's first column, its builder's column (`name` or a library), from one table row.
_ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| \w+ \| (?P<builder>`\w+`|\w+) \| (?P<life>\w+)")
_SAMPLE_HOUR = datetime(2026, 11, 30, 14, tzinfo=UTC)
_MARK = "\x00"


def documented_rows() -> list[tuple[str, str, str]]:
    """``(key pattern, builder or library, lifetime)`` of every row of the Redis table."""
    section = DOC.read_text(encoding="utf-8").split("## What is in Redis", 1)[1]
    rows = [_ROW.match(line) for line in section.splitlines()]
    return [(m["key"], m["builder"].strip("`"), m["life"]) for m in rows if m]


def builders() -> dict[str, Callable[..., str]]:
    """Every public function of ``metrics.keys`` that builds one key."""
    return {
        name: function
        for name, function in inspect.getmembers(keys, inspect.isfunction)
        if function.__module__ == keys.__name__ and name.endswith("_key")
    }


def builder_patterns(function: Callable[..., str]) -> Iterator[re.Pattern[str]]:
    """What ``function`` builds, as a pattern: with every argument, and with defaults left out."""
    parameters = list(inspect.signature(function).parameters.values())
    for with_optional in (True, False):
        args = [
            _SAMPLE_HOUR if p.annotation == "datetime" else _MARK
            for p in parameters
            if with_optional or p.default is inspect.Parameter.empty
        ]
        built = re.escape(function(*args)).replace(re.escape(_MARK), "[^:]+")
        yield re.compile(built.replace(f"{_SAMPLE_HOUR:%Y%m%d%H}", "[^:]+"))


@pytest.fixture(autouse=True)
def default_prefixes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The table shows the default prefixes."""
    for name in list(os.environ):
        if name.upper().startswith("REDIS_PREFIX_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_every_key_builder_is_documented_and_every_documented_builder_exists() -> None:
    documented = {builder for _, builder, _ in documented_rows() if builder.endswith("_key")}

    assert documented == set(builders())


@pytest.mark.parametrize(("key", "builder", "life"), documented_rows())
def test_each_documented_key_is_what_its_builder_makes(key: str, builder: str, life: str) -> None:
    assert life in ("kept", "transient")
    if builder in ("kombu", "Celery"):
        return
    patterns = list(builder_patterns(builders()[builder]))
    assert any(pattern.fullmatch(key) for pattern in patterns), (key, patterns)


def test_every_builder_output_has_a_row() -> None:
    keys_in_doc = [key for key, _, _ in documented_rows()]
    for name, function in builders().items():
        full = next(builder_patterns(function))
        assert any(full.fullmatch(key) for key in keys_in_doc), name
