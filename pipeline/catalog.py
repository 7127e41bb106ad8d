"""The catalog: who orders (customers) and where articles go (publishers).

Validated at the edge like a manifest; stored in the ledger; read by preflight,
writing, QC and delivery through these typed profiles.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints, model_validator

from pipeline.manifest import DomainName, Identifier, LanguageCode

Term = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1, max_length=100)
]


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
    min_words: int = Field(default=300, ge=50, le=10_000)
    max_words: int = Field(default=2000, ge=50, le=20_000)
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


class Catalog(BaseModel):
    """A catalog file: customers and publishers to insert or update."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customers: tuple[CustomerProfile, ...] = ()
    publishers: tuple[PublisherProfile, ...] = ()
