"""QC: each check passing and failing, the whole report, and the offline writer's articles."""

from __future__ import annotations

import html
import json
import string
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.catalog import PublisherProfile
from pipeline.errors import QualityRejected
from pipeline.manifest import OrderDocument
from pipeline.similarity import minhash_signature
from pipeline.stages.html_article import Link, normalise_url, parse_article
from pipeline.stages.preflight import run_preflight
from pipeline.stages.qc import (
    QcRules,
    check_forbidden_terms,
    check_forbidden_topics,
    check_keyword_stuffing,
    check_language,
    check_near_duplicate,
    check_no_other_target_links,
    check_outbound_links,
    check_readability,
    check_target_link,
    check_title,
    check_word_count,
    detect_language,
    keyword_density,
    run_qc,
)
from pipeline.stages.writing import run_writing

TARGET = "https://www.acme.com/shoes"
ANCHOR = "running shoes"
PUBLISHER = "blog.example.org"
CHECKS = {
    "title",
    "word_count",
    "target_link",
    "no_other_target_links",
    "outbound_links",
    "forbidden_topics",
    "forbidden_terms",
    "language",
    "readability",
    "keyword_stuffing",
    "near_duplicate",
}

# About 370 words of ordinary English prose (LIX about 40).
PROSE = """
Most people start running because they want a simple way to stay healthy.
It needs little equipment, and you can begin right outside your own front door.
The first weeks are often the hardest, since the body has to adapt to a new kind of effort.
Short sessions with walking breaks help beginners build a habit without getting hurt.
Many coaches suggest increasing the weekly distance by no more than a tenth at a time.
Rest days matter just as much as training days, because muscles grow stronger while they recover.
Good sleep, enough water and regular meals make every session feel a little easier.
A comfortable pace is one where you can still talk in full sentences.
If you are out of breath after a few minutes, slow down and walk for a while.
Over time the same route will feel shorter, and that is a clear sign of progress.
Some runners like to keep a small diary of their distance, time and mood.
Looking back at those notes after a month can be surprisingly encouraging.
Weather is rarely a good reason to stay at home, but ice and storms certainly are.
In summer it helps to go early in the morning, before the heat builds up.
In winter a light jacket and a warm hat are usually enough for an easy run.
Hills are hard work, yet they build strength that pays off on flat roads as well.
Running with a friend or a local club makes it easier to keep going on grey days.
Group runs also teach you a lot about pacing, form and sensible goals.
A small race can give your training a purpose and a date to look forward to.
Nobody expects a beginner to win, and most people at the start line are there for fun.
After the race, take a few easy days before you return to your usual plan.
Pain that gets worse during a run is a signal to stop and seek advice.
Stretching after a session and a gentle walk the next day often reduce stiffness.
Above all, the best plan is one you enjoy enough to follow for many months.
"""


def make_order(**overrides: Any) -> OrderDocument:
    fields: dict[str, Any] = {
        "order_id": "order-1",
        "customer_id": "customer-1",
        "target_url": TARGET,
        "anchor_text": ANCHOR,
        "publisher_domain": PUBLISHER,
        "language": "en",
        "topic": "running",
    }
    fields.update(overrides)
    return OrderDocument.model_validate(fields)


def link(href: str = TARGET, text: str = ANCHOR) -> str:
    return f'<p>Good <a href="{href}">{text}</a> make a difference on long runs.</p>'


def article(
    body: str = "", *, title: str = "<h1>A guide to running</h1>", prose: str = PROSE
) -> dict[str, Any]:
    paragraphs = "\n".join(f"<p>{line}</p>" for line in prose.strip().splitlines())
    return {"title": "A guide to running", "html": f"{title}\n{paragraphs}\n{body}"}


def publisher(**overrides: Any) -> PublisherProfile:
    fields: dict[str, Any] = {"domain": PUBLISHER, "languages": ("en",)}
    fields.update(overrides)
    return PublisherProfile.model_validate(fields)


def rejection(order: OrderDocument, draft: dict[str, Any], **options: Any) -> QualityRejected:
    with pytest.raises(QualityRejected) as raised:
        run_qc(order, draft, **options)
    return raised.value


# --- parsing --------------------------------------------------------------------------


def test_parser_decodes_entities_and_keeps_words_of_adjacent_blocks_apart() -> None:
    parsed = parse_article(
        '<h1>Tom &amp; Jerry</h1><p>one <a href="https://a.com/?x=1&amp;y=2">two</a>, three</p>'
    )

    assert parsed.title == "Tom & Jerry"
    assert parsed.text.split() == ["Tom", "&", "Jerry", "one", "two,", "three"]
    assert [(found.href, found.text) for found in parsed.links] == [
        ("https://a.com/?x=1&y=2", "two")
    ]


def test_parser_puts_each_block_on_its_own_line_and_ignores_source_line_breaks() -> None:
    parsed = parse_article("<h2>Why it matters</h2><p>It does\nmatter.</p>")

    lines = [line.split() for line in parsed.text.splitlines() if line.strip()]
    assert lines == [["Why", "it", "matters"], ["It", "does", "matter."]]


def test_parser_ignores_hidden_text() -> None:
    parsed = parse_article("<p>seen</p><script>var hidden = 1;</script><style>p {}</style>")

    assert parsed.text.split() == ["seen"]


def test_normalise_url_matches_how_orders_store_urls() -> None:
    assert normalise_url("https://ACME.com") == "https://acme.com/"
    assert normalise_url("not a url") == "not a url"


# --- each check alone -----------------------------------------------------------------


def test_title_check_passes_with_text_and_fails_without() -> None:
    assert check_title("A guide").passed
    assert not check_title("").passed


@pytest.mark.parametrize(
    ("count", "passed"), [(299, False), (300, True), (2000, True), (2001, False)]
)
def test_word_count_check_bounds(count: int, passed: bool) -> None:
    assert check_word_count(count, 300, 2000).passed is passed


def test_word_count_feedback_says_how_far_off_the_article_is() -> None:
    assert check_word_count(570, 300, 450).feedback == "shorten by about 120 words to at most 450"
    assert check_word_count(250, 300, 450).feedback == "lengthen by about 50 words to at least 300"
    assert check_word_count(570, 300, 450).rewritable


def test_target_link_check_needs_exactly_one_matching_link() -> None:
    good = Link(TARGET, [ANCHOR])
    other_text = Link(TARGET, ["elsewhere"])

    assert check_target_link([good], TARGET, ANCHOR).passed
    assert not check_target_link([], TARGET, ANCHOR).passed
    assert not check_target_link([other_text], TARGET, ANCHOR).passed
    assert not check_target_link([good, good], TARGET, ANCHOR).passed


def test_target_link_feedback_names_the_anchor_and_the_url() -> None:
    result = check_target_link([], TARGET, ANCHOR)

    assert result.feedback == f"link the anchor text 'running shoes' exactly once to {TARGET}"
    assert result.rewritable


def test_other_target_links_check_flags_links_with_another_text() -> None:
    good = Link(TARGET, [ANCHOR])
    elsewhere = Link("https://other.com/", ["other site"])

    assert check_no_other_target_links([good, elsewhere], TARGET, ANCHOR).passed
    assert not check_no_other_target_links([good, Link(TARGET, ["buy"])], TARGET, ANCHOR).passed


def test_outbound_links_check_counts_distinct_links_off_the_publishers_site() -> None:
    links = [
        Link(TARGET),
        Link("https://WWW.ACME.com/shoes"),  # the same URL as the target, once normalised
        Link("https://other.com/a"),
        Link("https://third.net/"),
        Link("/about"),
        Link("#notes"),
        Link(f"https://{PUBLISHER}/archive"),
        Link(f"https://www.{PUBLISHER}/"),
        Link(f"https://news.{PUBLISHER}/"),
        Link(None),
    ]

    result = check_outbound_links(links, PUBLISHER, 3)

    assert result.passed
    assert result.detail.startswith("3 distinct outbound links")


def test_outbound_links_check_fails_past_the_limit() -> None:
    links = [Link(f"https://site{index}.com/") for index in range(4)]

    result = check_outbound_links(links, PUBLISHER, 3)

    assert not result.passed
    assert result.rewritable
    assert "remove 1 outbound links" in result.feedback


def test_forbidden_terms_check_matches_whole_words_in_any_case() -> None:
    text = "Try your luck at the CASINO tonight, or take a\npayday   loan."

    assert not check_forbidden_terms(text, ["casino"]).passed
    assert not check_forbidden_terms(text, ["payday loan"]).passed
    assert check_forbidden_terms(text, ["casinos", "loans", "luc"]).passed
    assert check_forbidden_terms(text, []).passed


def test_forbidden_terms_failure_is_rewritable_and_names_the_terms() -> None:
    result = check_forbidden_terms("casino and poker", ["poker", "casino", "bingo"])

    assert result.rewritable
    assert result.feedback == "remove the terms 'poker', 'casino'"


def test_forbidden_topics_check_reads_the_topic_and_the_title() -> None:
    assert not check_forbidden_topics("Online Gambling tips", "A guide", ["gambling"]).passed
    assert not check_forbidden_topics("money", "Gambling explained", ["gambling"]).passed
    assert check_forbidden_topics("betting", "Better running", ["bet"]).passed
    assert check_forbidden_topics("running", "A guide", []).passed


def test_forbidden_topics_failure_is_not_rewritable() -> None:
    result = check_forbidden_topics("gambling", "A guide", ["gambling"])

    assert not result.rewritable
    assert "does not accept 'gambling'" in result.feedback


def test_detect_language_reads_english_swedish_and_german() -> None:
    assert detect_language(PROSE) == "en"
    assert detect_language("Det här är en text på svenska om hur man börjar springa.") == "sv"
    assert (
        detect_language("Das ist ein deutscher Text darüber, wie man mit Laufen anfängt.") == "de"
    )


def test_language_check_compares_the_detected_language_with_the_order() -> None:
    assert check_language("en", "en", word_count=300, min_words=50).passed
    result = check_language("de", "en", word_count=300, min_words=50)
    assert not result.passed
    assert result.rewritable
    assert result.feedback == "write the whole article in 'en', not 'de'"


def test_language_check_passes_texts_too_short_to_tell() -> None:
    assert check_language("de", "en", word_count=49, min_words=50).passed


@pytest.mark.parametrize(
    ("score", "passed"), [(19.9, False), (20.0, True), (60.0, True), (60.1, False)]
)
def test_readability_check_bounds(score: float, passed: bool) -> None:
    assert check_readability(score, 20, 60).passed is passed


def test_readability_feedback_says_which_way_to_go() -> None:
    assert "fuller sentences" in check_readability(12.0, 20, 60).feedback
    assert "shorter sentences" in check_readability(75.0, 20, 60).feedback


def test_near_duplicate_check_compares_against_earlier_signatures() -> None:
    signature = minhash_signature(PROSE)
    other = minhash_signature("A completely different text about baking bread at home.")

    assert check_near_duplicate(signature, [], 0.8).passed
    assert check_near_duplicate(signature, [other], 0.8).passed
    result = check_near_duplicate(signature, [other, signature], 0.8)
    assert not result.passed
    assert result.rewritable
    assert "100% of it matches an earlier article" in result.feedback


def test_keyword_density_counts_each_mention_once_however_long_the_phrase() -> None:
    # "trail running shoes" holds "trail running": one mention; then one more "trail running".
    text = "Trail running shoes are good. I like trail running, too."

    assert keyword_density(text, ["trail running shoes", "trail running"]) == pytest.approx(2 / 10)
    assert keyword_density(text, ["swimming"]) == 0.0
    assert keyword_density("", ["swimming"]) == 0.0


def test_keyword_stuffing_check_passes_ordinary_prose_and_fails_repetition() -> None:
    stuffed = PROSE + " Running shoes, running shoes and more running shoes." * 10

    assert check_keyword_stuffing(PROSE, ANCHOR, "running", 0.06).passed
    result = check_keyword_stuffing(stuffed, ANCHOR, "running", 0.06)
    assert not result.passed
    assert result.rewritable


# --- the whole stage --------------------------------------------------------------------


def test_a_good_article_passes_with_a_full_report() -> None:
    report = run_qc(make_order(), article(link()))

    assert report["passed"] is True
    assert set(report["checks"]) == CHECKS
    for check in report["checks"].values():
        assert set(check) == {"passed", "detail", "rewritable"}
        assert check["passed"] is True
    assert report["language"] == "en"
    assert 20 <= report["lix"] <= 60
    assert report["rewritable"] is True
    assert report["feedback"] == []
    assert report["signature"] == minhash_signature(parse_article(article(link())["html"]).text)
    assert json.loads(json.dumps(report)) == report


def test_word_count_is_the_visible_words() -> None:
    report = run_qc(make_order(), article(link()))

    visible = "A guide to running " + PROSE + " Good running shoes make a difference on long runs."
    assert report["word_count"] == len(visible.split())


def test_escaped_anchor_text_and_url_are_compared_decoded() -> None:
    order = make_order(anchor_text='Tom & "Jerry"', target_url="https://acme.com/?a=1&b=2")
    body = link(href="https://acme.com/?a=1&amp;b=2", text="Tom &amp; &quot;Jerry&quot;")

    assert run_qc(order, article(body))["passed"]


def test_link_without_trailing_slash_counts_as_the_target() -> None:
    order = make_order(target_url="https://acme.com")

    assert run_qc(order, article(link(href="https://acme.com")))["passed"]


def test_missing_title_is_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^title: "):
        run_qc(make_order(), article(link(), title=""))


def test_too_few_words_are_rejected_with_the_full_report() -> None:
    error = rejection(make_order(), article(link()), rules=QcRules(min_words=1000))

    assert str(error).startswith("word_count: ")
    report = error.details
    assert report["passed"] is False
    assert report["checks"]["word_count"]["passed"] is False
    assert report["rewritable"] is True
    assert report["feedback"] == [
        f"lengthen by about {1000 - report['word_count']} words to at least 1000"
    ]


def test_the_publishers_word_bounds_replace_the_rules() -> None:
    error = rejection(make_order(), article(link()), publisher=publisher(max_words=300))

    assert str(error).startswith("word_count: ")
    assert "shorten by about" in error.details["feedback"][0]


def test_missing_link_is_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^target_link: found 0"):
        run_qc(make_order(), article())


def test_link_with_the_wrong_text_is_rejected() -> None:
    error = rejection(make_order(), article(link(text="cheap shoes")))

    assert str(error).startswith("target_link: ")
    assert error.details["checks"]["no_other_target_links"]["passed"] is False
    assert len(error.details["feedback"]) == 2


def test_two_matching_links_are_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^target_link: found 2"):
        run_qc(make_order(), article(link() + link()))


def test_an_extra_link_to_the_target_is_rejected() -> None:
    with pytest.raises(QualityRejected, match=r"^no_other_target_links: "):
        run_qc(make_order(), article(link() + link(text="buy now")))


def test_links_to_other_sites_are_not_counted_against_the_target() -> None:
    body = link() + link(href="https://other.com/", text="other")

    assert run_qc(make_order(), article(body))["passed"]


def test_too_many_outbound_links_are_rejected() -> None:
    extra = "".join(link(href=f"https://site{index}.com/", text="a site") for index in range(3))

    error = rejection(make_order(), article(link() + extra), publisher=publisher())

    assert str(error).startswith("outbound_links: 4 distinct")
    assert error.details["rewritable"] is True


def test_a_forbidden_topic_is_rejected_and_cannot_be_rewritten() -> None:
    error = rejection(
        make_order(), article(link()), publisher=publisher(forbidden_topics=("running",))
    )

    assert str(error).startswith("forbidden_topics: ")
    assert error.details["rewritable"] is False
    assert error.details["checks"]["forbidden_topics"]["rewritable"] is False


def test_a_forbidden_term_is_rejected() -> None:
    error = rejection(
        make_order(), article(link()), publisher=publisher(forbidden_terms=("Hills",))
    )

    assert str(error).startswith("forbidden_terms: ")
    assert error.details["feedback"] == ["remove the terms 'hills'"]


def test_without_a_publisher_nothing_is_forbidden() -> None:
    report = run_qc(make_order(), article(link()))

    assert report["checks"]["forbidden_terms"]["passed"]
    assert report["checks"]["forbidden_topics"]["passed"]


def test_an_article_in_another_language_is_rejected() -> None:
    error = rejection(make_order(language="de"), article(link()))

    assert str(error) == "language: written in 'en', ordered in 'de'"
    assert error.details["language"] == "en"
    assert error.details["rewritable"] is True


def test_run_on_sentences_are_rejected_as_hard_to_read() -> None:
    # One paragraph, one sentence of some 370 words.
    run_on = PROSE.replace(".", ",").replace("\n", " ")

    error = rejection(make_order(), article(link(), prose=run_on))

    assert str(error).startswith("readability: ")
    assert error.details["lix"] > 60


def test_keyword_stuffing_is_rejected() -> None:
    stuffed = PROSE + "\nRunning is running, and running means running again today.\n" * 8

    error = rejection(make_order(), article(link(), prose=stuffed))

    assert str(error).startswith("keyword_stuffing: ")


def test_a_near_duplicate_of_an_earlier_article_is_rejected_but_rewritable() -> None:
    first = run_qc(make_order(), article(link()))

    error = rejection(make_order(), article(link()), earlier_signatures=[first["signature"]])

    assert str(error).startswith("near_duplicate: ")
    assert error.details["rewritable"] is True


def test_an_unrelated_earlier_article_is_no_duplicate() -> None:
    earlier = minhash_signature("Baking bread at home needs flour, water, salt and patience.")

    assert run_qc(make_order(), article(link()), earlier_signatures=[earlier])["passed"]


def test_a_rewritable_failure_and_a_final_one_make_the_report_final() -> None:
    draft = article(link(text="cheap shoes"))

    error = rejection(make_order(), draft, publisher=publisher(forbidden_topics=("running",)))

    assert error.details["rewritable"] is False
    assert [name for name, check in error.details["checks"].items() if not check["passed"]] == [
        "target_link",
        "no_other_target_links",
        "forbidden_topics",
    ]


# --- the offline writer's articles pass ----------------------------------------------------

WRITER_CASES = {
    "en": ("trail running", "running shoes for beginners"),
    "sv": ("terränglöpning", "löparskor för nybörjare"),
    "de": ("Trailrunning", "Laufschuhe für Anfänger"),
}


@pytest.mark.parametrize("language", sorted(WRITER_CASES))
def test_every_offline_article_passes_qc(language: str) -> None:
    # Given ten orders in one language, written from the prompt preflight builds
    topic, anchor = WRITER_CASES[language]
    bounds = publisher(languages=(language,), min_words=450, max_words=800)
    earlier: list[list[int]] = []
    for index in range(10):
        order = make_order(
            order_id=f"order-{index}", language=language, topic=topic, anchor_text=anchor
        )
        draft = run_writing(order, run_preflight(order)["prompt"], seed=index % 3)

        # Then each passes with the default rules, and with a publisher around the target
        # (no near-duplicate of the ones before it either)
        assert run_qc(order, draft)["passed"]
        report = run_qc(order, draft, publisher=bounds, earlier_signatures=earlier)
        assert report["language"] == language
        assert report["word_count"] == draft["word_count"]
        earlier.append(report["signature"])


# --- target_link holds for any anchor text -----------------------------------------------

_ANCHORS = st.text(
    alphabet=string.printable.replace("\x0b", "").replace("\x0c", "") + "åäöüß€\"'<>&",
    min_size=1,
    max_size=100,
).filter(lambda text: text.strip() != "")


def with_links(anchor: str, count: int) -> dict[str, Any]:
    anchor_link = f'<a href="{html.escape(TARGET)}">{html.escape(anchor)}</a>'
    return article(f"<p>Before {' and '.join([anchor_link] * count)} after.</p>")


def target_link_passed(order: OrderDocument, draft: dict[str, Any]) -> bool:
    try:
        report = run_qc(order, draft)
    except QualityRejected as error:
        report = error.details
    return bool(report["checks"]["target_link"]["passed"])


@settings(max_examples=100, deadline=None, database=None)
@given(anchor=_ANCHORS)
def test_target_link_holds_for_any_anchor_text(anchor: str) -> None:
    order = make_order(anchor_text=anchor)

    assert target_link_passed(order, with_links(order.anchor_text, 1))
    assert not target_link_passed(order, with_links(order.anchor_text, 0))
    assert not target_link_passed(order, with_links(order.anchor_text, 2))
