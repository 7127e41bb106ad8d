"""The writer seam: feedback parsing, the offline writer's rewrites and the factory."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import ConfigurationError
from pipeline.manifest import OrderDocument
from pipeline.settings import Settings
from pipeline.stages.html_article import parse_article
from pipeline.stages.writing import run_writing
from pipeline.writers import (
    LengthBounds,
    OfflineWriter,
    OpenAICompatibleWriter,
    length_bounds,
    make_writer,
)
from pipeline.writers.base import ensure_link, fill_prompt
from pipeline.writers.offline import requested_language
from pipeline.writers.openai_compat import parse_retry_after, strip_code_fences, user_message

TARGET = "https://www.acme-shoes.com/running?size=42&colour=red"
ANCHOR = "running shoes for beginners"


def make_order(**overrides: Any) -> OrderDocument:
    fields: dict[str, Any] = {
        "order_id": "order-1",
        "customer_id": "customer-1",
        "target_url": TARGET,
        "anchor_text": ANCHOR,
        "publisher_domain": "blog.example.org",
        "language": "en",
        "topic": "trail running",
    }
    fields.update(overrides)
    return OrderDocument.model_validate(fields)


def prompt_for(order: OrderDocument, **overrides: Any) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "topic": order.topic,
        "language": order.language,
        "target_words": 600,
        "anchor_text": order.anchor_text,
        "target_url": str(order.target_url),
    }
    prompt.update(overrides)
    return prompt


def one_backlink(fragment: str) -> bool:
    links = parse_article(fragment).links
    return [(link.href, link.text) for link in links] == [(TARGET, ANCHOR)]


# --- feedback parsing -------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("shorten by about 120 words to at most 450", LengthBounds(None, 450)),
        ("lengthen by about 80 words to at least 500", LengthBounds(500, None)),
        ("keep it between 1,000 and 1,200 words", LengthBounds(1000, 1200)),
        ("Shorten the article to no more than 700", LengthBounds(None, 700)),
        ("the word count must be at least 350", LengthBounds(350, None)),
        ("lengthen it to no less than 350 words", LengthBounds(350, None)),
        ("write more than 400 words, fewer than 900 words", LengthBounds(400, 900)),
        ("shorten by about 120 words", LengthBounds(shift=-120)),
        ("lengthen by roughly 90 words", LengthBounds(shift=90)),
    ],
)
def test_length_feedback_is_read_as_bounds(line: str, expected: LengthBounds) -> None:
    assert length_bounds({}, [line]) == expected


@pytest.mark.parametrize(
    "line",
    [
        f"link the anchor text {ANCHOR!r} exactly once to https://example.com/at-most/5",
        "link the anchor text 'shorten to 50 words' exactly once to https://example.com/",
        "write fuller sentences: LIX 28.4, aim for at least 30",
        "use shorter sentences and plainer words: LIX 55.0, at most 50",
        "remove 3 outbound links; keep at most 2, the target included",
        "mention the topic and anchor less often (at most 2.5% of words)",
        "reword the text: 85% of it matches an earlier article (must stay below 70%)",
        "write in de",
        "use fewer repetitions of 'trail running'",
    ],
)
def test_feedback_about_other_things_sets_no_length(line: str) -> None:
    assert length_bounds({}, [line]) == LengthBounds()


def test_prompt_bounds_are_tightened_by_feedback() -> None:
    prompt = {"min_words": 400, "max_words": 900}

    bounds = length_bounds(prompt, ["shorten by about 200 words to at most 700"])

    assert bounds == LengthBounds(400, 700)
    assert bounds.aim(600) == 550


@pytest.mark.parametrize(
    ("bounds", "target", "aim"),
    [
        (LengthBounds(), 600, 600),
        (LengthBounds(450, 500), 600, 475),
        (LengthBounds(None, 450), 600, 405),
        (LengthBounds(None, 900), 600, 600),
        (LengthBounds(700, None), 600, 770),
        (LengthBounds(shift=-120), 600, 480),
    ],
)
def test_aim_lies_inside_the_bounds(bounds: LengthBounds, target: int, aim: int) -> None:
    assert bounds.aim(target) == aim


@pytest.mark.parametrize(
    ("feedback", "language"),
    [
        (["write in de"], "de"),
        (["write the whole article in 'sv', not 'en'"], "sv"),
        (["write it in German"], "de"),
        (["write in fr"], None),
        (["shorten by about 120 words to at most 450"], None),
    ],
)
def test_language_feedback_names_a_known_language(
    feedback: list[str], language: str | None
) -> None:
    assert requested_language(feedback) == language


# --- the offline writer -----------------------------------------------------
# What every writer promises (fields, one backlink, length feedback and prompt
# bounds, failures) is in tests/contracts/test_writer_contract.py.


def test_offline_writer_is_deterministic_for_order_and_attempt() -> None:
    order, writer = make_order(), OfflineWriter()

    first = writer.write(order, prompt_for(order), attempt=2)
    second = writer.write(order, prompt_for(order), attempt=2)

    assert first == second
    assert first["writer"] == "offline"
    assert first["attempt"] == 2


def test_first_attempt_is_the_article_run_writing_always_wrote() -> None:
    order = make_order()

    article = OfflineWriter().write(order, prompt_for(order))

    assert article["html"] == run_writing(order, prompt_for(order), seed=0)["html"]


def test_each_attempt_writes_another_article() -> None:
    order, writer = make_order(), OfflineWriter()

    articles = [writer.write(order, prompt_for(order), attempt=attempt) for attempt in (1, 2, 3)]

    assert len({article["html"] for article in articles}) == 3
    assert all(one_backlink(article["html"]) for article in articles)


def test_a_maximum_below_the_layouts_floor_gives_the_shortest_article() -> None:
    # The offline layout needs about 100 words: the unfixable-length case QC reports.
    order = make_order()
    feedback = ["shorten by about 550 words to at most 50"]

    article = OfflineWriter().write(order, prompt_for(order), feedback=feedback)

    assert 50 < article["word_count"] < 150
    assert one_backlink(article["html"])


def test_language_feedback_switches_the_vocabulary() -> None:
    order = make_order()

    article = OfflineWriter().write(order, prompt_for(order), feedback=["write in de"], attempt=2)

    english = OfflineWriter().write(order, prompt_for(order), attempt=2)
    assert article["html"] != english["html"]
    assert one_backlink(article["html"])


# --- shared helpers ---------------------------------------------------------


def test_fill_prompt_takes_missing_fields_from_the_order() -> None:
    order = make_order()

    brief = fill_prompt(order, {"topic": "hill running"})

    assert brief["topic"] == "hill running"
    assert brief["anchor_text"] == ANCHOR
    assert brief["target_url"] == TARGET
    assert brief["target_words"] == 600


def test_ensure_link_keeps_a_present_link() -> None:
    fragment = f'<h1>T</h1><p>See <a href="{TARGET}">{ANCHOR}</a>.</p>'

    assert ensure_link(fragment, TARGET, ANCHOR) == (fragment, False)


def test_ensure_link_links_a_plain_mention_in_a_paragraph() -> None:
    fragment = f"<h1>{ANCHOR}</h1><p>Good {ANCHOR} matter.</p>"

    repaired, changed = ensure_link(fragment, TARGET, ANCHOR)

    assert changed
    assert repaired.startswith(f"<h1>{ANCHOR}</h1>")  # headings stay unlinked
    assert one_backlink(repaired)


def test_ensure_link_leaves_an_article_without_the_anchor_for_qc() -> None:
    fragment = "<h1>T</h1><p>Nothing to link here.</p>"

    assert ensure_link(fragment, TARGET, ANCHOR) == (fragment, False)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("```html\n<h1>T</h1>\n```", "<h1>T</h1>"),
        ("Here it is:\n```\n<p>x</p>\n```\nEnjoy!", "<p>x</p>"),
        ("  <h1>T</h1>  ", "<h1>T</h1>"),
    ],
)
def test_code_fences_are_stripped(content: str, expected: str) -> None:
    assert strip_code_fences(content) == expected


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)

    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_user_message_carries_the_brief_and_the_rewrite_notes() -> None:
    order = make_order()
    brief = fill_prompt(order, {"guidelines": ["Keep an informative tone."], "max_words": 500})

    message = user_message(brief, ["shorten by about 100 words to at most 450"])

    assert '<a href="https://www.acme-shoes.com/running?size=42&amp;colour=red">' in message
    assert ANCHOR in message
    assert "English" in message
    assert "at most 450" in message
    assert "- Keep an informative tone." in message
    assert "rewrite" in message


# --- the factory ------------------------------------------------------------


def test_factory_builds_the_offline_writer_by_default() -> None:
    assert isinstance(make_writer(Settings(writer_backend="offline")), OfflineWriter)


def test_factory_builds_the_openai_writer_from_settings() -> None:
    settings = Settings(
        writer_backend="openai", writer_url="http://localhost:9/v1", writer_timeout_seconds=5
    )

    writer = make_writer(settings)

    assert isinstance(writer, OpenAICompatibleWriter)
    assert writer.endpoint == "http://localhost:9/v1/chat/completions"
    assert writer.timeout == 5
    writer.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"writer_url": None}, "WRITER_URL"),
        ({"writer_url": "http://localhost:9/v1", "writer_model": " "}, "WRITER_MODEL"),
        ({"writer_url": "localhost:9/v1"}, "http"),
    ],
)
def test_factory_refuses_an_incomplete_openai_configuration(
    overrides: dict[str, Any], message: str
) -> None:
    settings = Settings(writer_backend="openai", **overrides)

    with pytest.raises(ConfigurationError, match=message):
        make_writer(settings)
