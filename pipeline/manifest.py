"""Validation of a submitted batch at the edge: every field typed, every error named.

``validate_submission`` turns untrusted input into a :class:`Submission` or raises
:class:`ManifestError` whose message names the field (``documents[3].target_url``)
and the problem. Nothing is written before this succeeds.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Any, NoReturn

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationError,
    field_validator,
)

from pipeline.chunk import DEFAULT_MAX_RETRIES
from pipeline.lanes import PRIORITIES

# C0 controls (but tab and newlines), DEL and the C1 range (8-bit terminal escapes).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_METADATA_DEPTH = 10
MAX_METADATA_BYTES = 8_192


class ManifestError(ValueError):
    """A submission was rejected; ``field`` names where, the message says why."""

    def __init__(self, field: str, problem: str) -> None:
        # Both parts as the exception's args: Celery rebuilds a task's exception for
        # the caller's .get() as cls(*args), so the type and the field survive the trip.
        super().__init__(field, problem)
        self.field = field
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


def _no_control_chars(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("contains control characters")
    return value


_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"

Identifier = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=_ID_PATTERN)
]
#: A Celery task name (``batchline.maintenance.log_completion``, ``myapp.tasks.notify``).
TaskName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[A-Za-z_][\w.:-]*$"
    ),
]
AnchorText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_no_control_chars),
]
TopicText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_no_control_chars),
]
DomainName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        max_length=253,
        pattern=r"^([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
    ),
]
LanguageCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[A-Za-z]{2}$")
]


def _depth(value: Any, level: int = 0) -> int:
    """How deeply ``value`` nests, stopping early once past the limit (no recursion blow-up)."""
    if level > MAX_METADATA_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(item, level + 1) for item in value.values()), default=level + 1)
    if isinstance(value, list | tuple):
        return max((_depth(item, level + 1) for item in value), default=level + 1)
    return level


class OrderDocument(BaseModel):
    """One order: a backlink article for a customer on a publisher's site."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: Identifier
    customer_id: Identifier
    target_url: HttpUrl
    anchor_text: AnchorText
    publisher_domain: DomainName
    language: LanguageCode
    topic: TopicText
    deadline: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("deadline")
    @classmethod
    def _deadline_has_zone(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must include a time zone, e.g. 2026-12-01T12:00:00Z")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_is_small_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        if _depth(value) > MAX_METADATA_DEPTH:
            raise ValueError(f"is nested deeper than {MAX_METADATA_DEPTH} levels")
        try:
            # ensure_ascii=False + strict UTF-8 rejects lone surrogates PostgreSQL would refuse.
            dumped = json.dumps(value, allow_nan=False, ensure_ascii=False)
            size = len(dumped.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("must be valid Unicode (found a lone surrogate)") from None
        except (TypeError, ValueError) as error:
            raise ValueError(f"must be plain JSON ({error})") from None
        if "\\u0000" in dumped:  # PostgreSQL's jsonb cannot store NUL
            raise ValueError("must not contain NUL characters (U+0000)")
        if size > MAX_METADATA_BYTES:
            raise ValueError(f"is {size} bytes; at most {MAX_METADATA_BYTES} allowed")
        return value

    def to_json(self) -> dict[str, Any]:
        """Return the order as plain JSON types, as stored in the ledger."""
        return self.model_dump(mode="json")


class _Project(BaseModel):
    project_uuid: Identifier


class SubmitOptions(BaseModel):
    """Options of ``submit_batch``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warm_cache: bool | None = None
    max_retries: int = Field(default=DEFAULT_MAX_RETRIES, ge=0, le=20)
    batch_id: Identifier | None = None
    #: a registered Celery task called once with the final status (checked at submit)
    on_complete: TaskName | None = None


class Submission(BaseModel):
    """A validated batch, ready to be written to the ledger."""

    model_config = ConfigDict(frozen=True)

    project_uuid: Identifier
    priority: str
    options: SubmitOptions
    documents: tuple[OrderDocument, ...]

    def digest(self) -> str:
        """SHA-256 of the canonical JSON: a reused ``batch_id`` must bring the same content."""
        payload = self.model_dump(mode="json")
        if payload["options"].get("on_complete") is None:
            # Absent as before the option existed: earlier batches keep their digest.
            payload["options"].pop("on_complete", None)
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _field_path(location: tuple[int | str, ...], prefix: str) -> str:
    path = prefix
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "submission"


# Readable words for pattern failures, keyed by the field's last name.
_PATTERN_HINTS = {
    "publisher_domain": "must be a domain name such as blog.example.com",
    "language": "must be a two-letter ISO 639-1 code such as en",
    "on_complete": "must be a Celery task name such as myapp.tasks.batch_done",
}
_ID_HINT = "may hold only letters, digits and . _ : @ - and must start with a letter or digit"


def _problem(error: Any) -> str:
    if error["type"] == "string_pattern_mismatch":
        hint = _PATTERN_HINTS.get(str(error["loc"][-1]), _ID_HINT)
        shown = str(error.get("input"))[:60]
        return f"{hint} (got {shown!r})"
    return str(error["msg"]).removeprefix("Value error, ")


def _raise_first(error: ValidationError, prefix: str) -> NoReturn:
    first = error.errors()[0]
    location = tuple(part for part in first["loc"] if not str(part).startswith("function-"))
    raise ManifestError(_field_path(location, prefix), _problem(first))


def _check_shape(documents: Any, max_items: int) -> list[Any]:
    if not isinstance(documents, list | tuple):
        raise ManifestError(
            "documents", f"must be a list of orders, got {type(documents).__name__}"
        )
    if not documents:
        raise ManifestError("documents", "must contain at least one order")
    if len(documents) > max_items:
        raise ManifestError(
            "documents", f"has {len(documents)} orders; at most {max_items} (BATCH_MAX_ITEMS)"
        )
    return list(documents)


def validate_order(raw: Any, where: str) -> OrderDocument:
    """Validate one order, naming fields below ``where`` (``documents[3]``, ``document``).

    The per-order rules of :func:`validate_submission`, for callers that take orders
    one at a time (``tasks.intake.OrderIntake``).

    Raises:
        ManifestError: naming the field (``documents[3].language``) and the problem.
    """
    if not isinstance(raw, dict):
        raise ManifestError(where, "must be an object")
    try:
        return OrderDocument.model_validate(raw)
    except ValidationError as error:
        _raise_first(error, where)


def validate_group(project_uuid: Any, priority: Any) -> tuple[str, str]:
    """``(project_uuid, priority)`` checked as :func:`validate_submission` checks them.

    Raises:
        ManifestError: naming ``project_uuid`` or ``priority``.
    """
    if priority not in PRIORITIES:
        raise ManifestError("priority", f"must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    try:
        project = _Project(project_uuid=project_uuid).project_uuid
    except ValidationError as error:
        _raise_first(error, "")
    return project, str(priority)


def _parse_documents(documents: list[Any]) -> tuple[OrderDocument, ...]:
    parsed: list[OrderDocument] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(documents):
        order = validate_order(raw, f"documents[{index}]")
        if order.order_id in seen:
            raise ManifestError(
                f"documents[{index}].order_id",
                f"duplicates documents[{seen[order.order_id]}] ({order.order_id!r})",
            )
        seen[order.order_id] = index
        parsed.append(order)
    return tuple(parsed)


def validate_submission(
    documents: Any, project_uuid: Any, priority: Any, options: Any, *, max_items: int
) -> Submission:
    """Validate a whole submission, stopping at the first problem.

    Raises:
        ManifestError: naming the field and the problem.
    """
    if priority not in PRIORITIES:
        raise ManifestError("priority", f"must be one of {', '.join(PRIORITIES)}, got {priority!r}")
    try:
        parsed_options = SubmitOptions.model_validate(options or {})
    except ValidationError as error:
        _raise_first(error, "options")
    orders = _parse_documents(_check_shape(documents, max_items))
    try:
        return Submission(
            project_uuid=project_uuid, priority=priority, options=parsed_options, documents=orders
        )
    except ValidationError as error:
        _raise_first(error, "")
