"""The offline writer behind the :class:`~pipeline.writers.base.Writer` seam.

It wraps :func:`pipeline.stages.writing.run_writing`: the same order, prompt,
feedback and attempt always give the same article, and each attempt uses its
own seed, so a rewrite reads differently from the draft before it. Length
feedback and the prompt's ``min_words``/``max_words`` move its target.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from pipeline.manifest import OrderDocument
from pipeline.stages.preflight import DEFAULT_TARGET_WORDS
from pipeline.stages.vocabulary import VOCABULARIES
from pipeline.stages.writing import run_writing
from pipeline.writers.base import LengthBounds, length_bounds

#: Drafts written to land inside the bounds before the closest one is kept. The
#: writer's layout has a floor (about 100 words), so a lower maximum cannot be met.
_MAX_PASSES: Final = 5
# "write in de", "write the whole article in 'de', not 'en'", "write it in German".
_LANGUAGE = re.compile(r"\bwrite\b[^.;:]*?\bin\s+['\"]?([\w-]+)", re.IGNORECASE)
_LANGUAGE_NAMES: Final = {
    **{code: code for code in VOCABULARIES},
    **{vocabulary.name.casefold(): code for code, vocabulary in VOCABULARIES.items()},
}


def requested_language(feedback: Sequence[str]) -> str | None:
    """The language the last "write ... in <code or name>" asks for, if the writer has it."""
    wanted = None
    for line in feedback:
        for match in _LANGUAGE.finditer(line):
            wanted = _LANGUAGE_NAMES.get(match[1].casefold(), wanted)
    return wanted


def _distance(count: int, bounds: LengthBounds) -> int:
    if bounds.min_words is not None and count < bounds.min_words:
        return bounds.min_words - count
    if bounds.max_words is not None and count > bounds.max_words:
        return count - bounds.max_words
    return 0


class OfflineWriter:
    """Deterministic articles from the offline phrase book; needs no service."""

    name: Final = "offline"

    def __init__(
        self, latency_seconds: float = 0.0, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        """``latency_seconds``: wait this long per article, as an LLM API's answer takes.

        Zero by default. Benchmarks and load tests set ``WRITER_OFFLINE_LATENCY_MS``
        to put the pipeline in the regime real writers create (seconds per
        article, so concurrency caps and not CPU decide the pace).
        """
        self._latency = latency_seconds
        self._sleep = sleep

    def write(
        self,
        order: OrderDocument,
        prompt: dict[str, Any],
        *,
        feedback: Sequence[str] = (),
        attempt: int = 1,
    ) -> dict[str, Any]:
        """Write the article for ``order``; see :meth:`pipeline.writers.base.Writer.write`.

        Raises:
            InvalidInput: the language has no vocabulary.
        """
        if self._latency > 0:
            self._sleep(self._latency)
        brief = dict(prompt)
        language = requested_language(feedback)
        if language is not None:
            brief["language"] = language
        bounds = length_bounds(prompt, feedback)
        target = int(prompt.get("target_words", DEFAULT_TARGET_WORDS))
        # Attempt 1 keeps seed 0, the article the writer wrote before attempts existed.
        article = self._within(order, brief, bounds, bounds.aim(target), seed=attempt - 1)
        return {**article, "attempt": attempt}

    def _within(
        self,
        order: OrderDocument,
        brief: dict[str, Any],
        bounds: LengthBounds,
        aim: int,
        *,
        seed: int,
    ) -> dict[str, Any]:
        """Write towards ``aim`` and correct the target until the count is in bounds."""
        target = aim
        best: dict[str, Any] | None = None
        for _ in range(_MAX_PASSES):
            article = run_writing(order, {**brief, "target_words": target}, seed=seed)
            article["target_words"] = target
            count = article["word_count"]
            if best is None or _distance(count, bounds) < _distance(best["word_count"], bounds):
                best = article
            if bounds.contains(count):
                break
            # Move the target by the miss: the writer's counts track its target.
            step = aim - count
            if step == 0 or target + step < 1:
                break
            target += step
        assert best is not None
        return best
