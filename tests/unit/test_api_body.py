"""The submission body as JSON or JSONL, with ManifestError's field paths."""

from __future__ import annotations

import pytest

from api.body import parse_options, parse_order, parse_submission
from pipeline.manifest import ManifestError


def test_a_json_body_gives_submit_batch_its_arguments() -> None:
    raw = b'{"documents": [{"order_id": "a"}], "project_uuid": "p", "priority": "high"}'
    assert parse_submission(raw, "application/json", {}) == {
        "documents": [{"order_id": "a"}],
        "project_uuid": "p",
        "priority": "high",
        "options": None,
    }


def test_a_jsonl_body_takes_the_rest_from_the_query() -> None:
    raw = b'{"order_id": "a"}\n\n{"order_id": "b"}\n'
    query = {"project_uuid": "p", "priority": "low", "batch_id": "b-1"}
    parsed = parse_submission(raw, "application/x-ndjson; charset=utf-8", query)
    assert parsed["documents"] == [{"order_id": "a"}, {"order_id": "b"}]
    assert (parsed["project_uuid"], parsed["priority"]) == ("p", "low")
    assert parsed["options"] == {"batch_id": "b-1"}


@pytest.mark.parametrize(
    ("raw", "content_type", "field"),
    [
        (b"\xff", "application/json", "body"),
        (b"[1, 2]", "application/json", "body"),
        (b'{"documents": [], "extra": 1}', "application/json", "extra"),
        (b"{oops", "application/json", "body"),
        (b'{"a": 1}\n{oops', "application/x-ndjson", "body line 2"),
    ],
)
def test_a_bad_body_names_where(raw: bytes, content_type: str, field: str) -> None:
    with pytest.raises(ManifestError) as error:
        parse_submission(raw, content_type, {})
    assert error.value.field == field


def test_recovery_options_may_be_empty() -> None:
    assert parse_options(b"  ") is None
    assert parse_options(b'{"retry_all": true}') == {"retry_all": True}


def test_a_single_order_body_gives_order_intake_its_arguments() -> None:
    raw = b'{"document": {"order_id": "o-1"}, "project_uuid": "p-1"}'
    assert parse_order(raw) == {
        "document": {"order_id": "o-1"},
        "project_uuid": "p-1",
        "priority": None,
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [(b"{", "body"), (b"[1]", "body"), (b'{"documents": []}', "documents")],
)
def test_a_bad_single_order_body_names_where(raw: bytes, field: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_order(raw)
    assert caught.value.field == field
