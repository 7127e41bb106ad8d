"""Writers: the seam between the writing stage and whatever writes the article.

``make_writer(get_settings())`` returns the backend ``WRITER_BACKEND`` names: the
deterministic :class:`OfflineWriter` or the HTTP :class:`OpenAICompatibleWriter`
(imported on demand, so the offline path never loads httpx).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.writers.base import LengthBounds, Writer, length_bounds, make_writer
from pipeline.writers.offline import OfflineWriter

if TYPE_CHECKING:
    from pipeline.writers.openai_compat import OpenAICompatibleWriter

__all__ = [
    "LengthBounds",
    "OfflineWriter",
    "OpenAICompatibleWriter",
    "Writer",
    "length_bounds",
    "make_writer",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAICompatibleWriter":
        from pipeline.writers.openai_compat import OpenAICompatibleWriter

        return OpenAICompatibleWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
