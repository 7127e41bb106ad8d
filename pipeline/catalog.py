"""The catalog: who orders (customers) and where articles go (publishers).

Validated at the edge like a manifest; stored in the ledger; read by preflight,
writing, QC and delivery through these typed profiles. Catalog files come as JSON
(``{"customers": [...], "publishers": [...]}``) or as CSV, one kind per file;
:func:`parse_catalog_json` and :func:`parse_catalog_csv` turn either into a
:class:`Catalog` or raise :class:`CatalogError` naming the line or field.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StringConstraints,
    ValidationError,
    model_validator,
)

from pipeline.manifest import DomainName, Identifier, LanguageCode

Term = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=100)
]
_WORD = re.compile(r"\w+")


class CatalogError(ValueError):
    """A catalog file was rejected; the message names the file, line or field, and why."""


def words_of(text: str) -> tuple[str, ...]:
    """Return the case-folded words of ``text`` (letters and digits in any script)."""
    return tuple(_WORD.findall(text.casefold()))


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words ("payday loans" in "best payday loans").

    Whole words, so "bet" is not found in "better"; case and punctuation are ignored.
    """
    haystack, needle = words_of(text), words_of(phrase)
    if not needle:
        return False
    return any(
        haystack[start : start + len(needle)] == needle
        for start in range(len(haystack) - len(needle) + 1)
    )


class CustomerTier(StrEnum):
    """What a customer pays for; premium and standard orders rank higher."""

    PREMIUM = "premium"
    STANDARD = "standard"
    BASIC = "basic"


class CustomerProfile(BaseModel):
    """One customer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: Identifier
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    tier: CustomerTier = CustomerTier.BASIC
    suspended: bool = False


class PublisherProfile(BaseModel):
    """One publisher site and the rules its articles must meet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: DomainName
    languages: tuple[LanguageCode, ...] = Field(min_length=1)
    topics: tuple[Term, ...] = ()
    min_words: int = Field(default=300, ge=10, le=10_000)
    max_words: int = Field(default=2000, ge=10, le=20_000)
    max_outbound_links: int = Field(default=3, ge=1, le=50)
    dofollow: bool = True
    forbidden_topics: tuple[Term, ...] = ()
    forbidden_terms: tuple[Term, ...] = ()
    guidelines: tuple[Annotated[str, StringConstraints(max_length=500)], ...] = ()
    webhook_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _bounds_in_order(self) -> PublisherProfile:
        if self.min_words > self.max_words:
            raise ValueError("min_words must not exceed max_words")
        return self

    def topic_overlap(self, topic: str) -> float:
        """Share of the words of ``topic`` found among this publisher's topics (0 to 1)."""
        wanted = set(words_of(topic))
        if not wanted:
            return 0.0
        offered = {word for known in self.topics for word in words_of(known)}
        return round(len(wanted & offered) / len(wanted), 3)

    def forbidden_topic_in(self, topic: str) -> str | None:
        """Return the first forbidden topic that ``topic`` names, or ``None``."""
        return next((bad for bad in self.forbidden_topics if contains_phrase(topic, bad)), None)

    def forbidden_term_in(self, text: str) -> str | None:
        """Return the first forbidden term that occurs in ``text``, or ``None``."""
        return next((bad for bad in self.forbidden_terms if contains_phrase(text, bad)), None)


def _first_repeat(keys: Iterable[str]) -> tuple[int, int] | None:
    """Positions ``(first, again)`` of the first key that occurs twice, or ``None``."""
    seen: dict[str, int] = {}
    for position, key in enumerate(keys):
        if key in seen:
            return seen[key], position
        seen[key] = position
    return None


class Catalog(BaseModel):
    """A catalog file: customers and publishers to insert or update."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: tuple[CustomerProfile, ...] = ()
    publishers: tuple[PublisherProfile, ...] = ()

    @model_validator(mode="after")
    def _keys_unique(self) -> Catalog:
        # One upsert statement cannot touch a row twice, and "last one wins" would
        # hide a mistake in the file: a repeated key is an error.
        for kind, keys in (
            ("customers", [c.customer_id for c in self.customers]),
            ("publishers", [p.domain for p in self.publishers]),
        ):
            repeat = _first_repeat(keys)
            if repeat is not None:
                first, again = repeat
                raise ValueError(f"{kind}[{again}] repeats {keys[again]!r} of {kind}[{first}]")
        return self


# --- catalog files ---------------------------------------------------------------------

#: CSV columns holding lists, their items separated by "|".
LIST_SEPARATOR: Final = "|"
_LIST_COLUMNS: Final = frozenset(
    {"languages", "topics", "forbidden_topics", "forbidden_terms", "guidelines"}
)
_CSV_KINDS: Final[dict[str, tuple[str, type[CustomerProfile] | type[PublisherProfile]]]] = {
    "customer_id": ("customers", CustomerProfile),
    "domain": ("publishers", PublisherProfile),
}


def _location(location: Sequence[int | str]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def describe_validation_error(error: ValidationError) -> str:
    """The first problem of ``error`` as ``field: message (got value)``."""
    first = error.errors()[0]
    where = _location([p for p in first["loc"] if not str(p).startswith("function-")])
    message = str(first["msg"]).removeprefix("Value error, ")
    given = first.get("input")
    if isinstance(given, str | int | float | bool) and first["type"] != "value_error":
        message += f" (got {str(given)[:60]!r})"
    return f"{where}: {message}" if where else message


def parse_catalog_json(data: Any, source: str) -> Catalog:
    """Validate parsed JSON as a :class:`Catalog`.

    Raises:
        CatalogError: naming ``source`` and the field (``customers[2].tier``).
    """
    if not isinstance(data, dict):
        raise CatalogError(f"{source}: must be an object with customers and publishers")
    try:
        return Catalog.model_validate(data)
    except ValidationError as error:
        raise CatalogError(f"{source}: {describe_validation_error(error)}") from None


def _csv_kind(header: Sequence[str], source: str) -> tuple[str, type[BaseModel]]:
    """Which profiles the file holds (by its key column), after checking every column."""
    kinds = [key for key in _CSV_KINDS if key in header]
    if len(kinds) != 1:
        raise CatalogError(
            f"{source} line 1: the header must name either customer_id (customers)"
            " or domain (publishers)"
        )
    kind, model = _CSV_KINDS[kinds[0]]
    unknown = [name for name in header if name not in model.model_fields]
    repeated = _first_repeat(header)
    if unknown:
        known = ", ".join(model.model_fields)
        raise CatalogError(f"{source} line 1: unknown column {unknown[0]!r} ({kind}: {known})")
    if repeated is not None:
        raise CatalogError(f"{source} line 1: column {header[repeated[1]]!r} appears twice")
    return kind, model


def _row_values(row: dict[str | None, Any]) -> dict[str, Any]:
    """A CSV row as model input: empty cells left out (defaults apply), lists split."""
    values: dict[str, Any] = {}
    for name, cell in row.items():
        if name is None or cell is None or not cell.strip():
            continue
        if name in _LIST_COLUMNS:
            values[name] = [part.strip() for part in cell.split(LIST_SEPARATOR) if part.strip()]
        else:
            values[name] = cell.strip()
    return values


def _read_rows(
    reader: csv.DictReader[str], model: type[BaseModel], source: str
) -> tuple[list[Any], list[int]]:
    """Validate every row; return the profiles and the line each came from."""
    profiles: list[Any] = []
    lines: list[int] = []
    for row in reader:
        where = f"{source} line {reader.line_num}"
        if None in row:
            raise CatalogError(f"{where}: more cells than the header has columns")
        try:
            profiles.append(model.model_validate(_row_values(row)))
        except ValidationError as error:
            raise CatalogError(f"{where}: {describe_validation_error(error)}") from None
        lines.append(reader.line_num)
    return profiles, lines


def parse_catalog_csv(text: str, source: str) -> Catalog:
    """Read customers (header has ``customer_id``) or publishers (header has ``domain``).

    Customers have the columns customer_id, name, tier and suspended; publishers
    the fields of :class:`PublisherProfile`, list fields separated by ``|``. An
    empty cell takes the field's default.

    Raises:
        CatalogError: naming ``source``, the line and the field.
    """
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise CatalogError(f"{source}: empty file, expected a header line")
    reader.fieldnames = header
    kind, model = _csv_kind(header, source)
    profiles, lines = _read_rows(reader, model, source)
    keys = _keys(profiles)
    repeat = _first_repeat(keys)
    if repeat is not None:
        first, again = repeat
        raise CatalogError(
            f"{source} line {lines[again]}: {keys[again]!r} repeats line {lines[first]}"
        )
    return Catalog.model_validate({kind: profiles})


def _keys(profiles: Sequence[CustomerProfile | PublisherProfile]) -> list[str]:
    return [p.customer_id if isinstance(p, CustomerProfile) else p.domain for p in profiles]


def merge_catalogs(parts: Sequence[tuple[str, Catalog]]) -> Catalog:
    """Join catalogs read from several files into one.

    Raises:
        CatalogError: a customer or publisher appears in two files.
    """
    owners: dict[tuple[str, str], str] = {}
    for source, catalog in parts:
        for kind, key in [
            *(("customer", c.customer_id) for c in catalog.customers),
            *(("publisher", p.domain) for p in catalog.publishers),
        ]:
            if (kind, key) in owners:
                raise CatalogError(f"{source}: {kind} {key!r} is also in {owners[kind, key]}")
            owners[kind, key] = source
    return Catalog(
        customers=tuple(c for _, catalog in parts for c in catalog.customers),
        publishers=tuple(p for _, catalog in parts for p in catalog.publishers),
    )
