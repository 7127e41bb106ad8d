"""The manifest validator: good orders are normalised, bad ones are named field by field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from celery_app import LANES
from pipeline.manifest import (
    MAX_METADATA_BYTES,
    ManifestError,
    Submission,
    validate_group,
    validate_order,
    validate_submission,
)

MAX_ITEMS = 50


def make_order(number: int = 1, /, **overrides: Any) -> dict[str, Any]:
    order: dict[str, Any] = {
        "order_id": f"order-{number}",
        "customer_id": "customer-1",
        "target_url": "https://www.acme.com/shoes",
        "anchor_text": "running shoes",
        "publisher_domain": "blog.example.org",
        "language": "en",
        "topic": "running",
        "deadline": "2026-12-01T12:00:00Z",
        "metadata": {"campaign": "spring"},
    }
    order.update(overrides)
    return order


def submit(
    documents: Any,
    *,
    project_uuid: Any = "project-1",
    priority: Any = "normal",
    options: Any = None,
    max_items: int = MAX_ITEMS,
) -> Submission:
    return validate_submission(documents, project_uuid, priority, options, max_items=max_items)


def rejection(documents: Any, **kwargs: Any) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        submit(documents, **kwargs)
    return caught.value


# --- ManifestError --------------------------------------------------------------------


def test_manifest_error_carries_field_and_problem_and_reads_field_colon_problem() -> None:
    error = ManifestError("documents[3].target_url", "must be a URL")

    assert error.field == "documents[3].target_url"
    assert error.problem == "must be a URL"
    assert str(error) == "documents[3].target_url: must be a URL"
    assert isinstance(error, ValueError)


# --- valid input ----------------------------------------------------------------------


def test_a_valid_order_passes_and_keeps_its_values() -> None:
    submission = submit([make_order()], priority="high", options={"batch_id": "batch-7"})

    assert submission.project_uuid == "project-1"
    assert submission.priority == "high"
    assert submission.options.batch_id == "batch-7"
    assert submission.options.max_retries == 3
    (order,) = submission.documents
    assert order.order_id == "order-1"
    assert str(order.target_url) == "https://www.acme.com/shoes"
    assert order.deadline is not None and order.deadline.utcoffset() is not None
    assert order.metadata == {"campaign": "spring"}


def test_domain_and_language_are_lower_cased_and_whitespace_is_stripped() -> None:
    raw = make_order(
        order_id="  order-1 ",
        customer_id=" customer-1",
        publisher_domain="  Blog.Example.ORG ",
        language=" EN ",
        anchor_text="  running shoes\t",
        topic=" running  ",
    )

    (order,) = submit([raw]).documents

    assert order.order_id == "order-1"
    assert order.customer_id == "customer-1"
    assert order.publisher_domain == "blog.example.org"
    assert order.language == "en"
    assert order.anchor_text == "running shoes"
    assert order.topic == "running"


def test_optional_fields_may_be_left_out() -> None:
    raw = make_order()
    del raw["deadline"], raw["metadata"]

    (order,) = submit([raw]).documents

    assert order.deadline is None
    assert order.metadata == {}


def test_a_tuple_of_orders_is_accepted_like_a_list() -> None:
    submission = submit((make_order(1), make_order(2)))

    assert [order.order_id for order in submission.documents] == ["order-1", "order-2"]


def test_exactly_max_items_orders_are_accepted() -> None:
    orders = [make_order(number) for number in range(3)]

    assert len(submit(orders, max_items=3).documents) == 3


@pytest.mark.parametrize("priority", list(LANES))
def test_each_known_priority_is_accepted(priority: str) -> None:
    assert submit([make_order()], priority=priority).priority == priority


def test_an_order_converts_to_plain_json() -> None:
    (order,) = submit([make_order()]).documents

    stored = order.to_json()

    assert json.loads(json.dumps(stored)) == stored
    assert stored["target_url"] == "https://www.acme.com/shoes"


# --- one bad field at a time ----------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        "order_id",
        "customer_id",
        "target_url",
        "anchor_text",
        "publisher_domain",
        "language",
        "topic",
    ],
)
def test_a_missing_required_field_is_named(field: str) -> None:
    raw = make_order()
    del raw[field]

    error = rejection([make_order(1), make_order(2), raw])

    assert error.field == f"documents[2].{field}"
    assert error.problem == "Field required"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_id", 12),
        ("customer_id", ["customer-1"]),
        ("anchor_text", {"text": "shoes"}),
        ("topic", None),
        ("target_url", 42),
        ("metadata", ["not", "an", "object"]),
        ("deadline", "next tuesday"),
    ],
)
def test_a_wrong_type_is_named(field: str, value: Any) -> None:
    error = rejection([make_order(**{field: value})])

    assert error.field == f"documents[0].{field}"
    assert error.problem


def test_an_unknown_extra_field_is_named() -> None:
    error = rejection([make_order(colour="blue")])

    assert error.field == "documents[0].colour"
    assert error.problem == "Extra inputs are not permitted"


@pytest.mark.parametrize(
    "url", ["ftp://www.acme.com/file", "javascript:alert(1)", "file:///etc/passwd", "mailto:a@b.c"]
)
def test_a_target_url_with_a_scheme_other_than_http_is_rejected(url: str) -> None:
    error = rejection([make_order(target_url=url)])

    assert error.field == "documents[0].target_url"
    assert "http" in error.problem


@pytest.mark.parametrize("text", ["shoes\x00", "run\x07ning", "a\x1bb", "delete\x7f", "x\x0bz"])
def test_control_characters_in_anchor_text_are_rejected(text: str) -> None:
    error = rejection([make_order(anchor_text=text)])

    assert str(error) == "documents[0].anchor_text: contains control characters"


def test_control_characters_in_topic_are_rejected() -> None:
    error = rejection([make_order(topic="run\x00ning")])

    assert str(error) == "documents[0].topic: contains control characters"


@pytest.mark.parametrize("text", ["shoes\x9b31m", "next\x85line"])
def test_c1_control_characters_in_anchor_text_are_rejected(text: str) -> None:
    error = rejection([make_order(anchor_text=text)])

    assert error.field == "documents[0].anchor_text"


def test_anchor_text_of_200_characters_passes_and_201_is_rejected() -> None:
    assert submit([make_order(anchor_text="a" * 200)]).documents[0].anchor_text == "a" * 200

    error = rejection([make_order(anchor_text="a" * 201)])

    assert error.field == "documents[0].anchor_text"
    assert "200" in error.problem


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_id", "x" * 1_000_000),
        ("order_id", "<" * 1_000_000),
        ("anchor_text", "a" * 1_000_000),
        ("topic", "t" * 1_000_000),
        ("publisher_domain", "a" * 1_000_000 + ".com"),
    ],
)
def test_a_huge_string_is_rejected_with_a_short_message(field: str, value: str) -> None:
    error = rejection([make_order(**{field: value})])

    assert error.field == f"documents[0].{field}"
    assert len(str(error)) < 300  # the megabyte is not echoed back


@pytest.mark.parametrize(
    "order_id", ["1; DROP TABLE items", "../../etc", "<script>", "a b", "-leading-dash", "é"]
)
def test_an_injection_looking_order_id_is_rejected_with_a_readable_hint(order_id: str) -> None:
    error = rejection([make_order(order_id=order_id)])

    assert error.field == "documents[0].order_id"
    assert "may hold only letters, digits" in error.problem
    assert repr(order_id) in error.problem


@pytest.mark.parametrize("order_id", ["a.b_c:d@e-f", "0", "ORDER-2026-0001"])
def test_an_order_id_of_allowed_characters_passes(order_id: str) -> None:
    assert submit([make_order(order_id=order_id)]).documents[0].order_id == order_id


def test_an_order_id_of_128_characters_passes_and_129_is_rejected() -> None:
    submit([make_order(order_id="o" * 128)])

    assert rejection([make_order(order_id="o" * 129)]).field == "documents[0].order_id"


def test_a_bad_domain_gets_a_domain_hint() -> None:
    error = rejection([make_order(publisher_domain="not a domain")])

    assert error.field == "documents[0].publisher_domain"
    assert error.problem.startswith("must be a domain name")


@pytest.mark.parametrize("language", ["eng", "e", "e1", ""])
def test_a_bad_language_gets_a_language_hint(language: str) -> None:
    error = rejection([make_order(language=language)])

    assert error.field == "documents[0].language"
    assert "two-letter" in error.problem


def test_a_deadline_without_a_time_zone_is_rejected() -> None:
    error = rejection([make_order(deadline="2026-12-01T12:00:00")])

    assert error.field == "documents[0].deadline"
    assert error.problem.startswith("must include a time zone")


def test_a_deadline_with_an_offset_passes() -> None:
    (order,) = submit([make_order(deadline="2026-12-01T12:00:00+02:00")]).documents

    assert order.deadline is not None
    assert order.deadline.utcoffset() is not None


@pytest.mark.parametrize(
    "metadata",
    [{"ratio": float("nan")}, {"ratio": float("inf")}, {"when": object()}, {"raw": b"bytes"}],
)
def test_metadata_that_is_not_plain_json_is_rejected(metadata: dict[str, Any]) -> None:
    error = rejection([make_order(metadata=metadata)])

    assert error.field == "documents[0].metadata"
    assert error.problem.startswith("must be plain JSON")


def test_metadata_over_8_kib_is_rejected_with_its_size() -> None:
    error = rejection([make_order(metadata={"note": "x" * MAX_METADATA_BYTES})])

    assert error.field == "documents[0].metadata"
    assert f"at most {MAX_METADATA_BYTES} allowed" in error.problem


def test_metadata_just_under_8_kib_passes() -> None:
    padding = MAX_METADATA_BYTES - len(json.dumps({"note": ""}))
    metadata = {"note": "x" * padding}
    assert len(json.dumps(metadata).encode()) == MAX_METADATA_BYTES

    assert submit([make_order(metadata=metadata)]).documents[0].metadata == metadata


def test_deeply_nested_metadata_is_a_manifest_error() -> None:
    # ~1 000 levels is a few KiB of JSON, under the size limit; json.loads accepts it.
    nested: list[Any] = []
    innermost = nested
    for _ in range(5_000):
        inner: list[Any] = []
        innermost.append(inner)
        innermost = inner

    error = rejection([make_order(metadata={"tree": nested})])

    assert error.field == "documents[0].metadata"


def test_a_duplicate_order_id_names_both_indexes() -> None:
    orders = [make_order(1), make_order(2), make_order(3), make_order(2)]

    error = rejection(orders)

    assert error.field == "documents[3].order_id"
    assert error.problem == "duplicates documents[1] ('order-2')"


def test_order_ids_that_differ_only_by_whitespace_are_duplicates() -> None:
    error = rejection([make_order(order_id="order-1"), make_order(order_id=" order-1 ")])

    assert error.field == "documents[1].order_id"
    assert "documents[0]" in error.problem


@pytest.mark.parametrize("priority", ["urgent", "HIGH", "", None, 1, ["high"]])
def test_an_unknown_priority_is_rejected(priority: Any) -> None:
    error = rejection([make_order()], priority=priority)

    assert error.field == "priority"
    assert error.problem == f"must be one of high, normal, low, got {priority!r}"


@pytest.mark.parametrize("documents", [[], ()])
def test_an_empty_list_of_orders_is_rejected(documents: Any) -> None:
    assert str(rejection(documents)) == "documents: must contain at least one order"


@pytest.mark.parametrize(
    ("documents", "type_name"),
    [({"order_id": "order-1"}, "dict"), ("orders.json", "str"), (None, "NoneType"), (7, "int")],
)
def test_documents_that_are_not_a_list_are_rejected(documents: Any, type_name: str) -> None:
    error = rejection(documents)

    assert str(error) == f"documents: must be a list of orders, got {type_name}"


@pytest.mark.parametrize("document", ["order-1", 1, None, ["order-1"]])
def test_an_order_that_is_not_an_object_is_rejected(document: Any) -> None:
    error = rejection([make_order(1), document])

    assert str(error) == "documents[1]: must be an object"


def test_more_than_max_items_orders_are_rejected() -> None:
    orders = [make_order(number) for number in range(4)]

    error = rejection(orders, max_items=3)

    assert error.field == "documents"
    assert error.problem == "has 4 orders; at most 3 (BATCH_MAX_ITEMS)"


@pytest.mark.parametrize("max_retries", [-1, 21, 1_000])
def test_options_max_retries_out_of_range_is_rejected(max_retries: int) -> None:
    error = rejection([make_order()], options={"max_retries": max_retries})

    assert error.field == "options.max_retries"


@pytest.mark.parametrize("max_retries", [0, 20])
def test_options_max_retries_at_the_bounds_passes(max_retries: int) -> None:
    submission = submit([make_order()], options={"max_retries": max_retries})

    assert submission.options.max_retries == max_retries


@pytest.mark.parametrize("batch_id", ["../batch", "batch 1", "", "b" * 129, 5])
def test_a_bad_options_batch_id_is_rejected(batch_id: Any) -> None:
    error = rejection([make_order()], options={"batch_id": batch_id})

    assert error.field == "options.batch_id"


def test_an_unknown_option_is_rejected() -> None:
    assert rejection([make_order()], options={"retries": 3}).field == "options.retries"


def test_options_that_are_not_an_object_are_rejected() -> None:
    assert rejection([make_order()], options=["max_retries"]).field == "options"


@pytest.mark.parametrize("project_uuid", ["bad id", "", None, "../x"])
def test_a_bad_project_uuid_is_rejected(project_uuid: Any) -> None:
    assert rejection([make_order()], project_uuid=project_uuid).field == "project_uuid"


def test_validation_stops_at_the_first_bad_order() -> None:
    orders = [make_order(1), make_order(2, language="english"), make_order(3, topic="")]

    assert rejection(orders).field == "documents[1].language"


# --- lone surrogates (invalid UTF-8) --------------------------------------------------


@pytest.mark.parametrize(
    "field", ["topic", "anchor_text", "order_id", "customer_id", "target_url", "deadline"]
)
def test_a_lone_surrogate_in_a_string_field_is_rejected(field: str) -> None:
    value = "ab\udcffcd" if field != "target_url" else "https://acme.com/\udcff"

    error = rejection([make_order(**{field: value})])

    assert error.field == f"documents[0].{field}"
    assert "unicode" in error.problem


@pytest.mark.parametrize("metadata", [{"note": "\udcff"}, {"\udcff": 1}])
def test_a_lone_surrogate_in_metadata_is_rejected(metadata: dict[str, Any]) -> None:
    error = rejection([make_order(metadata=metadata)])

    assert error.field.startswith("documents[0].metadata")


# --- digest ---------------------------------------------------------------------------


def test_digest_is_stable_for_equal_input() -> None:
    first = submit([make_order(1), make_order(2)], options={"batch_id": "b-1"})
    second = submit([make_order(1), make_order(2)], options={"batch_id": "b-1"})

    assert first.digest() == second.digest()
    assert len(first.digest()) == 64
    assert first.digest() == first.digest()


def test_digest_is_the_same_for_input_that_normalises_to_the_same_orders() -> None:
    plain = submit([make_order(publisher_domain="blog.example.org", language="en")])
    shouting = submit([make_order(publisher_domain=" BLOG.Example.org", language="EN ")])

    assert plain.digest() == shouting.digest()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("order_id", "order-99"),
        ("customer_id", "customer-2"),
        ("target_url", "https://www.acme.com/boots"),
        ("anchor_text", "trail shoes"),
        ("publisher_domain", "news.example.org"),
        ("language", "sv"),
        ("topic", "hiking"),
        ("deadline", "2026-12-02T12:00:00Z"),
        ("metadata", {"campaign": "autumn"}),
    ],
)
def test_digest_changes_when_any_field_of_any_order_changes(field: str, value: Any) -> None:
    original = submit([make_order(1), make_order(2)])
    changed = submit([make_order(1), make_order(2, **{field: value})])

    assert original.digest() != changed.digest()


@pytest.mark.parametrize(
    "change",
    [
        {"priority": "high"},
        {"project_uuid": "project-2"},
        {"options": {"max_retries": 4}},
        {"options": {"batch_id": "other"}},
    ],
)
def test_digest_changes_when_the_submission_around_the_orders_changes(
    change: dict[str, Any],
) -> None:
    assert submit([make_order()]).digest() != submit([make_order()], **change).digest()


def test_digest_changes_when_orders_are_reordered() -> None:
    forwards = submit([make_order(1), make_order(2)])
    backwards = submit([make_order(2), make_order(1)])

    assert forwards.digest() != backwards.digest()


# --- fuzzing --------------------------------------------------------------------------

JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=25,
)
ORDER_FIELDS = sorted(make_order())


def _validates_or_rejects_cleanly(documents: Any, **kwargs: Any) -> None:
    try:
        result = submit(documents, **kwargs)
    except ManifestError as error:
        assert error.field
        assert str(error) == f"{error.field}: {error.problem}"
    else:
        assert isinstance(result, Submission)


@settings(max_examples=200, deadline=None, database=None)
@given(value=JSON_LIKE)
def test_any_json_value_as_documents_gives_a_submission_or_a_manifest_error(value: Any) -> None:
    _validates_or_rejects_cleanly(value)


@settings(max_examples=200, deadline=None, database=None)
@given(value=JSON_LIKE)
def test_any_json_value_as_one_document_gives_a_submission_or_a_manifest_error(
    value: Any,
) -> None:
    _validates_or_rejects_cleanly([value])


@settings(max_examples=300, deadline=None, database=None)
@given(field=st.sampled_from(ORDER_FIELDS), value=JSON_LIKE)
def test_any_json_value_in_one_field_gives_a_submission_or_a_manifest_error(
    field: str, value: Any
) -> None:
    _validates_or_rejects_cleanly([make_order(**{field: value})])


@settings(max_examples=200, deadline=None, database=None)
@given(project_uuid=JSON_LIKE, priority=JSON_LIKE, options=JSON_LIKE)
def test_any_json_values_around_the_orders_give_a_submission_or_a_manifest_error(
    project_uuid: Any, priority: Any, options: Any
) -> None:
    _validates_or_rejects_cleanly(
        [make_order()], project_uuid=project_uuid, priority=priority, options=options
    )


@settings(max_examples=100, deadline=None, database=None)
@given(orders=st.lists(st.integers(0, 20), min_size=1, max_size=15))
def test_an_order_id_seen_twice_is_always_reported_at_its_second_index(orders: list[int]) -> None:
    documents = [make_order(number) for number in orders]
    first_seen: dict[int, int] = {}
    duplicate = None
    for index, number in enumerate(orders):
        if number in first_seen:
            duplicate = (index, first_seen[number])
            break
        first_seen[number] = index

    if duplicate is None:
        assert len(submit(documents).documents) == len(orders)
    else:
        error = rejection(documents)
        assert error.field == f"documents[{duplicate[0]}].order_id"
        assert f"duplicates documents[{duplicate[1]}]" in error.problem


# --- one order at a time (OrderIntake) --------------------------------------------------


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"language": "english"}, "language"),
        ({"target_url": "ftp://x.example"}, "target_url"),
        ({"order_id": "bad id!"}, "order_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_a_single_order_is_refused_with_the_field_and_problem_of_a_batch(
    override: dict[str, Any], field: str
) -> None:
    # Given the same bad order alone and as a batch's fourth order
    order = make_order(4, **override)
    in_batch = rejection([make_order(1), make_order(2), make_order(3), order])
    with pytest.raises(ManifestError) as alone:
        validate_order(order, "document")
    # Then both name the same field below their prefix, with the same problem
    assert in_batch.field == f"documents[3].{field}"
    assert alone.value.field == f"document.{field}"
    assert alone.value.problem == in_batch.problem


def test_a_single_order_must_be_an_object_and_a_valid_one_passes() -> None:
    with pytest.raises(ManifestError, match="document: must be an object"):
        validate_order(["not", "an", "order"], "document")
    assert validate_order(make_order(), "document").order_id == "order-1"


@pytest.mark.parametrize(
    ("project", "priority", "field"),
    [("", "normal", "project_uuid"), (None, "high", "project_uuid"), ("p-1", "urgent", "priority")],
)
def test_a_single_orders_project_and_priority_are_checked_as_a_batchs(
    project: Any, priority: Any, field: str
) -> None:
    with pytest.raises(ManifestError) as alone:
        validate_group(project, priority)
    assert (
        alone.value.field
        == field
        == rejection([make_order()], project_uuid=project, priority=priority).field
    )


def test_a_valid_project_is_stripped_like_a_batchs() -> None:
    assert validate_group(" p-1 ", "low") == ("p-1", "low")
