"""The CPU each order costs in the pure stages, step by step, before and after session 8.

``python -m bench.stage_cpu`` builds the demo's inputs (sample orders with their
catalog profiles, preflight's prompts, the offline writer's articles at the sizes the
publishers' bounds give) and times every pure step in this one process with
``time.process_time``: parsing, word count, LIX, language, MinHash, each QC check,
the whole judgement, preflight per order and the offline writer per order.

Every step that session 8 made cheaper is timed twice, the current code and its
faithful copy from before (``tests/unit/reference``), in alternating rounds, so
the machine's load falls on both alike: only the ratio means anything on a shared
machine. ``--profile`` prints cProfile's top functions of the current whole judgement.
"""

from __future__ import annotations

import argparse
import cProfile
import html
import pstats
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: Earlier signatures per publisher QC compares with (tasks.preparers.SIGNATURES_PER_PUBLISHER).
EARLIER = 200
_DOCS = Path(__file__).resolve().parent.parent / "docs"


@dataclass(frozen=True)
class Case:
    """One order with everything its stages read: context, prompt, article, earlier signatures.

    ``earlier`` holds plain lists: each implementation compares with its own
    ``SignatureSet`` of them (another module's class would be read as plain lists).
    """

    order: Any
    context: Any
    prompt: dict[str, Any]
    article: dict[str, Any]
    publisher: Any
    earlier: list[list[int]]


def build_cases(count: int, *, prose: bool = False) -> list[Case]:
    """``count`` sample orders, each preflighted and written by the offline writer.

    ``prose``: each article's HTML is replaced by 675 words of this repository's docs
    (varied English, unlike the phrase book's), which QC then rejects for its links.
    """
    from cli.sample_orders import load_catalog, sample_orders
    from pipeline.history import PreflightContext
    from pipeline.manifest import OrderDocument
    from pipeline.similarity import minhash_signature
    from pipeline.stages.preflight import run_preflight
    from pipeline.writers.offline import OfflineWriter

    catalog = load_catalog()
    publishers = {profile.domain: profile for profile in catalog.publishers}
    customers = {profile.customer_id: profile for profile in catalog.customers}
    now = datetime.now(UTC)
    writer = OfflineWriter()
    raw = [OrderDocument.model_validate(order) for order in sample_orders(count + EARLIER)]
    # Earlier articles of other orders: the history QC's near-duplicate check reads.
    history = [
        writer.write(order, run_preflight(order, now=now)["prompt"]) for order in raw[:EARLIER]
    ]
    earlier = [minhash_signature(_text(article["html"])) for article in history]
    cases = []
    for item_id, order in enumerate(raw[EARLIER:], start=1):
        publisher = publishers.get(order.publisher_domain)
        context = PreflightContext(
            item_id=item_id,
            customer=customers.get(order.customer_id),
            publisher=publisher,
            history=(),
            now=now,
        )
        prompt = run_preflight(order, context)["prompt"]
        article = writer.write(order, prompt)
        if prose:
            article = {**article, "html": _prose(item_id - 1)}
        cases.append(Case(order, context, prompt, article, publisher, earlier))
    return cases


def _prose(index: int, words: int = 675) -> str:
    """The ``index``-th run of ``words`` words of docs/*.md as paragraphs of 60 words."""
    text = " ".join(path.read_text() for path in sorted(_DOCS.glob("*.md")))
    tokens = re.sub(r"[`*|#\[\]()]", " ", text).split()
    start = (index * words) % max(1, len(tokens) - words)
    chunk = tokens[start : start + words]
    paragraphs = (" ".join(chunk[at : at + 60]) for at in range(0, len(chunk), 60))
    return "<h1>Notes</h1>" + "".join(f"<p>{html.escape(part)}</p>" for part in paragraphs)


def _text(fragment: str) -> str:
    from pipeline.stages.html_article import parse_article

    return parse_article(fragment).text


def _judge(module: Any, earlier: Any) -> Callable[[Case], Any]:
    """``module.judge_article`` (its report, or its rejection's) against ``earlier``."""

    def judge(case: Case) -> Any:
        try:
            return module.judge_article(
                case.order, case.article, publisher=case.publisher, earlier_signatures=earlier
            )
        except module.QualityRejected as rejected:
            return rejected.details

    return judge


def steps(cases: Sequence[Case]) -> dict[str, tuple[Callable[[Case], Any], ...]]:
    """Step name -> (current,) or (current, before): each takes one case."""
    from pipeline import readability, similarity
    from pipeline.stages import html_article, preflight, qc, writing
    from pipeline.writers.offline import OfflineWriter
    from tests.unit.reference import qc as old_qc
    from tests.unit.reference import readability as old_readability
    from tests.unit.reference import similarity as old_similarity
    from tests.unit.reference import writing as old_writing

    # The parser did not change: the same code on both sides, the ratio's noise control.
    old_html = html_article
    texts = {id(case): _text(case.article["html"]) for case in cases}

    def on_text(function: Callable[[str], Any]) -> Callable[[Case], Any]:
        return lambda case: function(texts[id(case)])

    # All cases share one history; each implementation reads it through its own class.
    earlier = {
        qc: similarity.SignatureSet(cases[0].earlier),
        old_qc: old_similarity.SignatureSet(cases[0].earlier),
    }

    def check(module: Any, name: str) -> Callable[[Case], Any]:
        """One check of ``module`` (current or before) on facts measured beforehand."""
        facts = {id(case): module.ArticleFacts.from_html(case.article["html"]) for case in cases}

        def run(case: Case) -> Any:
            inputs = module._Inputs(
                case.order,
                facts[id(case)],
                module.QcRules(),
                limits=case.publisher or module.QcRules(),
                earlier=earlier[module],
                forbidden_topics=case.publisher.forbidden_topics if case.publisher else (),
                forbidden_terms=case.publisher.forbidden_terms if case.publisher else (),
            )
            return module._CHECKS[name](inputs)

        return run

    writer = OfflineWriter()
    table: dict[str, tuple[Callable[[Case], Any], ...]] = {
        "parse": (
            lambda case: html_article.parse_article(case.article["html"]),
            lambda case: old_html.parse_article(case.article["html"]),
        ),
        "word count": (on_text(lambda text: len(text.split())),),
        "lix": (on_text(readability.lix), on_text(old_readability.lix)),
        "language": (on_text(qc.detect_language), on_text(old_qc.detect_language)),
        "minhash": (
            on_text(similarity.minhash_signature),
            on_text(old_similarity.minhash_signature),
        ),
        "facts (all of the above)": (
            lambda case: qc.ArticleFacts.from_html(case.article["html"]),
            lambda case: old_qc.ArticleFacts.from_html(case.article["html"]),
        ),
    }
    table.update({f"check {name}": (check(qc, name), check(old_qc, name)) for name in qc._CHECKS})
    table["judge (whole QC)"] = (_judge(qc, earlier[qc]), _judge(old_qc, earlier[old_qc]))
    table["preflight per order"] = (lambda case: preflight.run_preflight(case.order, case.context),)
    table["offline drafting, one pass"] = (
        lambda case: writing.run_writing(case.order, case.prompt),
        lambda case: old_writing.run_writing(case.order, case.prompt),
    )
    table["offline writer per order (all passes)"] = (
        lambda case: writer.write(case.order, case.prompt),
    )
    return table


def _time(function: Callable[[Case], Any], cases: Sequence[Case], repeat: int) -> float:
    """CPU milliseconds per case, over ``repeat`` passes of every case."""
    start = time.process_time()
    for _ in range(repeat):
        for case in cases:
            function(case)
    return (time.process_time() - start) * 1000 / (repeat * len(cases))


def measure(
    cases: Sequence[Case], *, repeat: int, rounds: int
) -> dict[str, tuple[float, float | None]]:
    """Step -> (current ms, before ms or None): medians of ``rounds`` alternating rounds."""
    results: dict[str, tuple[float, float | None]] = {}
    for name, functions in steps(cases).items():
        samples: list[list[float]] = [[] for _ in functions]
        _time(functions[-1], cases, 1)  # warm: the language model, caches, numpy
        for round_ in range(rounds):
            # Each goes first in every other round, so neither always runs on a warmer CPU.
            order = list(enumerate(functions))
            for index, function in order[:: 1 if round_ % 2 == 0 else -1]:
                samples[index].append(_time(function, cases, repeat))
        medians = [statistics.median(values) for values in samples]
        results[name] = (medians[0], medians[1] if len(medians) > 1 else None)
    return results


def render(results: dict[str, tuple[float, float | None]], cases: Sequence[Case]) -> str:
    """A Markdown table: step, ms before, ms now, now / before."""
    words = statistics.mean(len(_text(case.article["html"]).split()) for case in cases)
    lines = [
        f"{len(cases)} sample orders, articles of {words:.0f} words on average",
        "",
        "| step | before, ms/order | now, ms/order | now / before |",
        "|---|---:|---:|---:|",
    ]
    for name, (now, before) in results.items():
        if before is None:
            lines.append(f"| {name} | | {now:.3f} | |")
        else:
            lines.append(f"| {name} | {before:.3f} | {now:.3f} | {now / before:.2f} |")
    return "\n".join(lines)


def profile(cases: Sequence[Case], repeat: int) -> None:
    """Print cProfile's top 25 functions (own time) of the current whole judgement."""
    from pipeline.similarity import SignatureSet
    from pipeline.stages import qc

    judge = _judge(qc, SignatureSet(cases[0].earlier))
    for case in cases:  # load the language model and fill the caches outside the profile
        judge(case)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        for case in cases:
            judge(case)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main(argv: Sequence[str] | None = None) -> None:
    """Build the inputs, time every step (or profile the judgement) and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=60, help="sample orders (default 60)")
    parser.add_argument("--repeat", type=int, default=5, help="passes per timing (default 5)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--profile", action="store_true", help="cProfile the judgement instead")
    parser.add_argument("--prose", action="store_true", help="articles of docs prose instead")
    args = parser.parse_args(argv)
    cases = build_cases(args.orders, prose=args.prose)
    if args.profile:
        profile(cases, args.repeat)
        return
    print(render(measure(cases, repeat=args.repeat, rounds=args.rounds), cases))


if __name__ == "__main__":
    main()
