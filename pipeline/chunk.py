"""The one message a stage task receives: item ids of one batch for one stage.

The feeder builds it, the router reads its lane, the task validates it from its
keyword arguments, and the chunk runner works from it. The stage is the task's
own (its name says it), so it travels in the task name, not in the kwargs.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.lanes import Lane
from pipeline.stage_registry import STAGE_NAMES

#: An order's retry budget per stage when its batch sets none (``options.max_retries``).
DEFAULT_MAX_RETRIES: Final = 3


class InvalidChunkMessage(ValueError):
    """Raised when a stage task's arguments are not a valid chunk message."""


class ChunkMessage(BaseModel):
    """One stage task's message, as typed values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stage: str
    batch_id: str = Field(min_length=1)
    item_ids: tuple[int, ...] = Field(min_length=1)
    #: the lane the chunk runs in (its batch's priority)
    priority: Lane = "normal"
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0)

    @field_validator("stage")
    @classmethod
    def _known_stage(cls, stage: str) -> str:
        if stage not in STAGE_NAMES:
            raise ValueError(f"unknown stage {stage!r}")
        return stage

    @classmethod
    def from_task(cls, stage: str, kwargs: dict[str, Any]) -> ChunkMessage:
        """Validate the keyword arguments a stage task was called with.

        Raises:
            InvalidChunkMessage: a field is missing or has the wrong type.
        """
        try:
            return cls.model_validate({**kwargs, "stage": stage})
        except ValidationError as error:
            raise InvalidChunkMessage(f"bad {stage} chunk message: {error}") from None

    def task_kwargs(self) -> dict[str, Any]:
        """The task's keyword arguments (JSON): everything but the stage."""
        return self.model_dump(mode="json", exclude={"stage"})

    def task_repr(self) -> str:
        """What Flower and Celery's log lines show for the message (``kwargsrepr``).

        A Python dict literal of the batch, stage, lane and chunk size, not the item
        ids (thousands of them would be cut off anyway): Flower shows it in its task
        list and finds chunks by it (``kwargs:batch_id=<id>`` in its search box).
        """
        shown = {
            "batch_id": self.batch_id,
            "stage": self.stage,
            "lane": self.priority,
            "items": len(self.item_ids),
        }
        return repr(shown)

    def with_items(self, item_ids: list[int]) -> ChunkMessage:
        """The same message for other items of the chunk (a retry of some of them)."""
        return self.model_copy(update={"item_ids": tuple(item_ids)})


def chunk_kwargsrepr(stage: str, kwargs: object) -> str | None:
    """``ChunkMessage.task_repr`` of a stage task's keyword arguments; None if malformed.

    For messages published without a ``kwargsrepr`` of their own (a Celery
    autoretry re-sends the kwargs as they were).
    """
    if not isinstance(kwargs, dict):
        return None
    try:
        return ChunkMessage.from_task(stage, kwargs).task_repr()
    except InvalidChunkMessage:
        return None
