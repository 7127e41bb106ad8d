"""Bad input is rejected at the edge, named field by field, and writes nothing anywhere.

Every rejection is checked against the real ledger (row counts of every table) and the
real broker (every Redis key and the length of each priority lane). No worker is needed:
a rejected submission must neither write nor dispatch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celery_app import LANES
from metrics.keys import queue_key
from pipeline.manifest import ManifestError, validate_submission
from pipeline.settings import get_settings
from tasks.control import cancel_batch
from tests.integration.helpers import ledger_counts, make_orders

pytestmark = pytest.mark.integration

PROJECT = "bad-input-project"
REQUIRED_FIELDS = (
    "order_id",
    "customer_id",
    "target_url",
    "anchor_text",
    "publisher_domain",
    "language",
    "topic",
)
ID_HINT = "may hold only letters, digits"
# What an error message must never carry raw: it is printed to terminals and logs.
UNPRINTABLE = {chr(code) for code in (*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0))}


def fresh_batch_id() -> str:
    """A batch id no other test uses, so a bug that writes would show as a new batch."""
    return f"bad-{uuid.uuid4().hex[:12]}"


#: What a submission never writes but the session's workers may, at any moment, while
#: they finish earlier tests' work: outputs, events, caches, Celery's own bookkeeping.
_BACKGROUND_TABLES = {"stage_outputs", "events", "delivery_receipts"}
_BACKGROUND_KEYS = ("_kombu", "unacked", "celery", "batch:cache:")


def snapshot() -> tuple[dict[str, int], list[str], dict[str, int]]:
    """Ledger row counts, every batchline Redis key and the length of each priority lane."""
    from metrics.redis_client import redis_client

    client = redis_client()
    every: list[str] = client.keys("*")  # type: ignore[assignment]
    keys = sorted(key for key in every if not key.startswith(_BACKGROUND_KEYS))
    lanes = {queue: int(client.llen(queue_key(queue))) for queue in LANES.values()}
    counts = {t: n for t, n in ledger_counts().items() if t not in _BACKGROUND_TABLES}
    return counts, keys, lanes


def assert_nothing_written(
    submit: Callable[[], object], expected: type[ManifestError] = ManifestError
) -> ManifestError:
    """Call ``submit``, expect ``expected``, prove ledger and Redis are as before; return it."""
    before = snapshot()
    with pytest.raises(expected) as raised:
        submit()
    assert snapshot() == before
    message = str(raised.value)
    assert not UNPRINTABLE & set(message), f"raw control characters in {message!r}"
    message.encode("utf-8")  # printable by the CLI: no lone surrogates either
    assert len(message) < 400, "the message must not echo huge input"
    return raised.value


def submit_orders(
    orders: Any,
    *,
    project: Any = PROJECT,
    priority: Any = "normal",
    options: Any = None,
) -> Callable[[], object]:
    """A deferred ``submit_batch`` call with a fresh batch id unless options are given."""
    from tasks import submit_batch

    chosen = {"batch_id": fresh_batch_id()} if options is None else options
    return lambda: submit_batch(orders, project, priority, chosen)


def rejected_order(index: int, field: str, value: Any, count: int = 2) -> ManifestError:
    """Submit ``count`` valid orders with one field of one order replaced; return the error."""
    orders = make_orders(count, f"bad-{field}")
    orders[index] = {**orders[index], field: value}
    return assert_nothing_written(submit_orders(orders))


# --- wrong types ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        pytest.param("anchor_text", 123, "valid string", id="anchor_text-int"),
        pytest.param("deadline", "tomorrow", "valid datetime", id="deadline-word"),
        pytest.param("metadata", [1, 2], "valid dictionary", id="metadata-list"),
    ],
)
def test_field_of_the_wrong_type_is_rejected_naming_it(
    service_env, field: str, value: Any, fragment: str
) -> None:
    error = rejected_order(1, field, value)

    assert error.field == f"documents[1].{field}"
    assert fragment in error.problem


def test_documents_given_as_an_object_are_rejected(service_env) -> None:
    orders = {str(n): order for n, order in enumerate(make_orders(2, "bad-dict"))}

    error = assert_nothing_written(submit_orders(orders))

    assert error.field == "documents"
    assert error.problem == "must be a list of orders, got dict"


# --- missing fields --------------------------------------------------------------------


@pytest.mark.parametrize("field", REQUIRED_FIELDS)
def test_missing_required_field_is_rejected_naming_it(service_env, field: str) -> None:
    orders = make_orders(3, f"bad-missing-{field}")
    del orders[2][field]

    error = assert_nothing_written(submit_orders(orders))

    assert error.field == f"documents[2].{field}"
    assert error.problem == "Field required"


# --- priority and options ----------------------------------------------------------------


@pytest.mark.parametrize("priority", ["urgent", ""], ids=["urgent", "empty"])
def test_unknown_priority_is_rejected(service_env, priority: str) -> None:
    error = assert_nothing_written(submit_orders(make_orders(2, "bad-prio"), priority=priority))

    assert error.field == "priority"
    assert error.problem == f"must be one of high, normal, low, got {priority!r}"


@pytest.mark.parametrize(
    ("options", "field", "fragment"),
    [
        pytest.param({"urgent": True}, "options.urgent", "Extra inputs", id="unknown-key"),
        pytest.param({"max_retries": 99}, "options.max_retries", "less than or equal to 20",
                     id="max-retries-too-high"),
        pytest.param("fast", "options", "valid dictionary", id="not-an-object"),
    ],
)  # fmt: skip
def test_bad_option_is_rejected_naming_it(
    service_env, options: Any, field: str, fragment: str
) -> None:
    error = assert_nothing_written(submit_orders(make_orders(2, "bad-opt"), options=options))

    assert error.field == field
    assert fragment in error.problem


def test_missing_priority_falls_back_to_the_default(
    service_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a submission without priority; dispatch is stubbed so that workers of
    # other test files (session-scoped) never see this batch
    from ledger.batches import find_batch
    from ledger.db import transaction
    from tasks import submit_batch

    started: list[str] = []
    monkeypatch.setattr("tasks.submit._start", lambda batch_id, *_: started.append(batch_id))
    batch_id = fresh_batch_id()

    # When it is submitted
    result = submit_batch(make_orders(2, batch_id), PROJECT, None, {"batch_id": batch_id})

    # Then it is accepted at the configured default priority
    assert result["batch_id"] == batch_id and started == [batch_id]
    with transaction() as session:
        row = find_batch(session, batch_id)
    assert row is not None and row.priority == get_settings().batch_default_priority
    cancel_batch(batch_id)  # its dispatch was stubbed: leave no running batch behind


# --- batch size ----------------------------------------------------------------------------


@pytest.fixture()
def max_items_5(service_env) -> Iterator[None]:
    """``BATCH_MAX_ITEMS=5`` for one test; the cached settings are re-read before and after."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BATCH_MAX_ITEMS", "5")
        get_settings.cache_clear()
        try:
            yield
        finally:
            get_settings.cache_clear()
    get_settings.cache_clear()  # the variable is gone now: nothing may have cached it meanwhile


def test_batch_over_max_items_is_rejected(max_items_5) -> None:
    error = assert_nothing_written(submit_orders(make_orders(6, "bad-size")))

    assert error.field == "documents"
    assert error.problem == "has 6 orders; at most 5 (BATCH_MAX_ITEMS)"


def test_empty_batch_is_rejected(service_env) -> None:
    error = assert_nothing_written(submit_orders([]))

    assert (error.field, error.problem) == ("documents", "must contain at least one order")


# --- duplicates ----------------------------------------------------------------------------


def test_duplicate_order_id_is_rejected_naming_both_positions(service_env) -> None:
    orders = make_orders(4, "bad-dup")
    orders[3] = {**orders[3], "order_id": orders[1]["order_id"]}

    error = assert_nothing_written(submit_orders(orders))

    assert error.field == "documents[3].order_id"
    assert error.problem == f"duplicates documents[1] ({orders[1]['order_id']!r})"


# --- huge strings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        pytest.param("anchor_text", "a" * 1_000_000, 200, id="anchor_text-1MB"),
        pytest.param("order_id", "o" * 10_000, 128, id="order_id-10KB"),
    ],
)
def test_huge_string_is_rejected_without_echoing_it(
    service_env, field: str, value: str, limit: int
) -> None:
    error = rejected_order(0, field, value)

    assert error.field == f"documents[0].{field}"
    assert error.problem == f"String should have at most {limit} characters"


# --- control characters and broken Unicode --------------------------------------------------


@pytest.mark.parametrize("field", ["anchor_text", "topic"])
@pytest.mark.parametrize(
    "text",
    ["nul\x00byte", "red \x1b[31malert", "csi \x9b2J"],
    ids=["nul", "ansi-escape", "c1-csi"],
)
def test_control_characters_are_rejected(service_env, field: str, text: str) -> None:
    error = rejected_order(1, field, text)

    assert error.field == f"documents[1].{field}"
    assert error.problem == "contains control characters"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        pytest.param("topic", "caf\udcff", "unicode string", id="topic"),
        pytest.param("metadata", {"note": "caf\udcff"}, "lone surrogate", id="metadata-value"),
        pytest.param("metadata", {"caf\udcff": 1}, "lone surrogate", id="metadata-key"),
    ],
)
def test_lone_surrogate_is_rejected(service_env, field: str, value: Any, fragment: str) -> None:
    error = rejected_order(1, field, value)

    assert error.field == f"documents[1].{field}"
    assert fragment in error.problem


@pytest.mark.parametrize(
    "metadata",
    [{"note": "nul\x00byte"}, {"nul\x00key": 1}, {"deep": [{"note": "\x00"}]}],
    ids=["value", "key", "nested"],
)
def test_nul_character_in_metadata_is_rejected(service_env, metadata: dict[str, Any]) -> None:
    error = rejected_order(1, "metadata", metadata)

    assert error.field == "documents[1].metadata"


# --- injection-looking identifiers ----------------------------------------------------------


def test_sql_looking_order_id_is_rejected(service_env) -> None:
    error = rejected_order(1, "order_id", "1'; DROP TABLE items;--")

    assert error.field == "documents[1].order_id"
    assert ID_HINT in error.problem and "DROP TABLE" in error.problem


def test_html_looking_customer_id_is_rejected(service_env) -> None:
    error = rejected_order(0, "customer_id", "<script>alert(1)</script>")

    assert error.field == "documents[0].customer_id"
    assert ID_HINT in error.problem


def test_path_looking_batch_id_is_rejected(service_env) -> None:
    orders = make_orders(2, "bad-path")
    error = assert_nothing_written(submit_orders(orders, options={"batch_id": "../../etc/passwd"}))

    assert error.field == "options.batch_id"
    assert ID_HINT in error.problem


def test_shell_looking_project_is_rejected(service_env) -> None:
    error = assert_nothing_written(
        submit_orders(make_orders(2, "bad-shell"), project="$(rm -rf /)")
    )

    assert error.field == "project_uuid"
    assert ID_HINT in error.problem


# --- a reused batch id ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"orders": 3}, id="more-orders"),
        pytest.param({"priority": "high"}, id="other-priority"),
        pytest.param({"project": "other-project"}, id="other-project"),
    ],
)
def test_reused_batch_id_with_other_content_writes_nothing(
    service_env, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any]
) -> None:
    # Given a batch stored in the ledger; its dispatch is stubbed so that no worker of
    # another test file processes it while this test compares counts
    from tasks import BatchConflict, submit_batch

    batch_id = fresh_batch_id()
    with monkeypatch.context() as patch:
        patch.setattr("tasks.submit._start", lambda *_: None)
        submit_batch(make_orders(2, batch_id), PROJECT, "normal", {"batch_id": batch_id})

    # When the same id comes back with other content
    second = submit_orders(
        make_orders(change.get("orders", 2), batch_id),
        project=change.get("project", PROJECT),
        priority=change.get("priority", "normal"),
        options={"batch_id": batch_id},
    )

    # Then it is a conflict and nothing more is written or dispatched
    error = assert_nothing_written(second, BatchConflict)
    assert error.field == "options.batch_id"
    assert error.problem == f"batch {batch_id!r} already exists with different content"
    cancel_batch(batch_id)  # its dispatch was stubbed: leave no running batch behind


# --- through the CLI ----------------------------------------------------------------------


def batchline(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a child process against the session's servers."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _json_with_nul_in_metadata() -> bytes:
    orders = make_orders(2, "bad-cli-nul")
    orders[1]["metadata"] = {"note": "nul\x00byte"}
    return json.dumps(orders).encode()


def _jsonl_with_bad_line_3() -> bytes:
    lines = [json.dumps(order) for order in make_orders(4, "bad-cli-jsonl")]
    lines[2] = lines[2][:-5]
    return "\n".join(lines).encode()


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        pytest.param("orders.json", b'[{"order_id": "x",', "not valid JSON", id="malformed-json"),
        pytest.param("orders.jsonl", _jsonl_with_bad_line_3(), "line 3: not valid JSON",
                     id="jsonl-bad-line"),
        pytest.param("orders.json", b'[{"order_id": "caf\xe9"}]', "not UTF-8", id="invalid-utf8"),
        pytest.param("orders.json", json.dumps({"order_id": "x"}).encode(),
                     "documents: must be a list of orders, got dict", id="object-not-list"),
        pytest.param("orders.json", _json_with_nul_in_metadata(), "documents[1].metadata",
                     id="nul-in-metadata"),
        pytest.param("orders.json", b"[" * 100_000 + b"]" * 100_000, "not valid JSON",
                     id="deeply-nested-json"),
    ],
)  # fmt: skip
def test_cli_rejects_a_bad_file_with_exit_2_and_writes_nothing(
    service_env, tmp_path: Path, name: str, content: bytes, fragment: str
) -> None:
    manifest = tmp_path / name
    manifest.write_bytes(content)
    before = snapshot()

    result = batchline("submit", str(manifest), env=service_env)

    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert snapshot() == before


# --- any single bad field -------------------------------------------------------------------


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    # A named function: hypothesis 6.170 misreads this lambda as not using its argument.
    return st.lists(children, max_size=3) | st.dictionaries(
        st.text(max_size=5), children, max_size=3
    )


JSON_ISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters(codec=None, exclude_categories=())),
    _containers,
    max_leaves=8,
)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(field=st.sampled_from([*REQUIRED_FIELDS, "deadline", "metadata"]), value=JSON_ISH)
def test_any_single_bad_field_is_named_and_writes_nothing(
    service_env, field: str, value: Any
) -> None:
    orders = make_orders(2, "bad-fuzz")
    orders[1] = {**orders[1], field: value}
    options = {"batch_id": fresh_batch_id()}

    try:
        validate_submission(orders, PROJECT, "normal", options, max_items=100)
    except ManifestError as error:
        expected = error.field
    else:
        return  # a valid order: nothing to reject (submitting it would write)

    assert expected == f"documents[1].{field}" or expected.startswith(f"documents[1].{field}.")
    rejected = assert_nothing_written(submit_orders(orders, options=options))
    assert rejected.field == expected
