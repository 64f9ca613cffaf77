"""Which of the tenant's documents a search is about: explicit metadata filters, and the
organisations and periods a question names.

Both read the tenant's own documents through its scope (``DocumentCatalogue.load``), so
another tenant's organisation names never shape this tenant's filters or preferences.

- ``MetadataFilters`` (``filters`` in ``/v1/search``, ``/v1/query``, ``--filter`` in the
  CLI) restrict the search to the documents that match; nothing else is searched.
- ``match_question``: when a question names an organisation, a period (a quarter, a year,
  a day, "the latest 10-Q") or a document title that the tenant's metadata knows, those
  documents are preferred (``retrieval.question_match``: ``filter`` puts their chunks
  first and falls back to the rest, ``boost`` adds a bonus to their second-stage score;
  ``bench/README.md`` compares them).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.document_facts import (
    PeriodMention,
    facts_of,
    names_in,
    normalise_text,
    organisation_aliases,
    parse_periods,
    period_matches,
    period_sort_key,
)
from core.models import Document, DocumentStatus
from core.tenancy import TenantScope, scoped

# Catalogues of the tenants searched most recently, by tenant id: (change key, catalogue).
_CACHE: OrderedDict[str, tuple[tuple[int, str], DocumentCatalogue]] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_TENANTS = 256
FILTER_FIELDS = ("organisation", "period", "document_type", "title", "metadata")
# Questions about several periods at once: "compared to previous quarters", "over time".
# ("Compared with the previous quarter" is not one: a 10-Q prints the prior period beside
# the latest, so the latest filing answers it.)
_ACROSS_PERIODS = re.compile(
    r"\b(?:over time|trends?|each quarter|every quarter|these (?:quarters|periods|filings|"
    r"reports|10-?qs)|across (?:the |all )?(?:quarters|periods|years|filings|reports|10-?qs)|"
    r"(?:previous|prior|past|preceding|earlier) (?:quarters|periods|years|filings|reports|ones))\b"
)
Strategy = Literal["filter", "boost", "off"]
Scalar = str | int | float | bool


class MetadataFilters(BaseModel):
    """Only documents whose metadata matches every given field (a list: any of its values).
    Organisation names match as people write them ("Apple" matches "Apple Inc.", and its
    ticker "AAPL"); periods in any common form ("Q1 2023", "2023-Q1", "2023", "March 31,
    2023"); ``title`` is a case-insensitive substring; ``metadata`` compares the keys you
    set at upload or with ``PATCH /v1/documents/{id}``."""

    model_config = ConfigDict(extra="forbid")

    organisation: str | list[str] | None = Field(
        default=None, description='e.g. "Apple" or ["Apple", "Microsoft"]'
    )
    period: str | list[str] | None = Field(
        default=None, description='e.g. "2023-Q1", "Q1 2023", "2023" or "2023-03-15"'
    )
    document_type: str | list[str] | None = Field(default=None, description='e.g. "Form 10-Q"')
    title: str | None = Field(default=None, max_length=200, description="Part of the title.")
    metadata: dict[str, Scalar | list[Scalar]] | None = Field(
        default=None, description='Your own metadata, e.g. {"department": "legal"}.'
    )

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(str(k) for k in value if k not in FILTER_FIELDS)
            if unknown:
                raise ValueError(
                    f"unknown filter field(s) {', '.join(unknown)}; the allowed fields are "
                    f"{', '.join(FILTER_FIELDS)}"
                )
        return value

    def is_empty(self) -> bool:
        return all(getattr(self, name) in (None, [], {}, "") for name in FILTER_FIELDS)


@dataclass(frozen=True, slots=True)
class _Entry:
    id: str
    title: str
    filename: str
    aliases: frozenset[str]
    tickers: frozenset[str]
    period: str | None
    period_end: date | None
    document_type: str | None
    user_metadata: dict[str, Any]


class DocumentCatalogue:
    """The tenant's searchable documents with what matching needs (one SQL query), indexed
    by organisation alias and ticker: a question is compared with each distinct name once,
    not with each document."""

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.by_alias: dict[str, list[_Entry]] = {}
        self.by_ticker: dict[str, list[_Entry]] = {}
        for entry in entries:
            for alias in entry.aliases:
                self.by_alias.setdefault(alias, []).append(entry)
            for ticker in entry.tickers:
                self.by_ticker.setdefault(ticker, []).append(entry)
        self.dated = [e for e in entries if e.period or e.period_end]

    @classmethod
    def load(
        cls, session: Session, scope: TenantScope, within: Iterable[str] | None = None
    ) -> DocumentCatalogue:
        """The tenant's ready documents (those in ``within``, when given). Read from SQL
        when they changed since the last call in this process, else from a cache: a
        tenant with 10k documents would otherwise spend ~100 ms per search here."""
        key_stmt = scoped(
            select(func.count(Document.id), func.max(Document.updated_at)), Document, scope
        ).where(Document.status == DocumentStatus.READY)
        count, last_change = session.execute(key_stmt).one()
        key = (count, str(last_change))
        with _CACHE_LOCK:
            cached = _CACHE.get(scope.tenant_id)
        if cached is None or cached[0] != key:
            cached = (key, cls._read(session, scope))
            with _CACHE_LOCK:
                _CACHE[scope.tenant_id] = cached
                _CACHE.move_to_end(scope.tenant_id)
                while len(_CACHE) > _CACHE_TENANTS:
                    _CACHE.popitem(last=False)
        catalogue = cached[1]
        if within is None:
            return catalogue
        wanted = set(within)
        return cls([e for e in catalogue.entries if e.id in wanted])

    @classmethod
    def _read(cls, session: Session, scope: TenantScope) -> DocumentCatalogue:
        stmt = scoped(select(Document), Document, scope).where(
            Document.status == DocumentStatus.READY
        )
        entries = []
        for document in session.scalars(stmt):
            facts = facts_of(document)
            aliases: set[str] = set()
            for name in facts.organisations:
                aliases |= organisation_aliases(name)
            tickers = (document.context or {}).get("tickers") or []
            entries.append(
                _Entry(
                    id=document.id,
                    title=facts.title or "",
                    filename=document.filename,
                    aliases=frozenset(aliases),
                    tickers=frozenset(t for t in tickers if isinstance(t, str) and t),
                    period=facts.period,
                    period_end=facts.period_end,
                    document_type=facts.document_type,
                    user_metadata=dict(document.user_metadata or {}),
                )
            )
        return cls(entries)

    def filtered(self, filters: MetadataFilters) -> list[str]:
        """Ids of the documents that match every field of ``filters``."""
        wanted = _Wanted.of(filters)
        return [e.id for e in self.entries if _matches_filters(e, wanted)]


def filter_documents(
    session: Session, scope: TenantScope, filters: MetadataFilters, within: list[str] | None
) -> list[str]:
    return DocumentCatalogue.load(session, scope, within).filtered(filters)


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


@dataclass(frozen=True, slots=True)
class _Wanted:
    """A filter's values in the form documents are compared with, read once per search
    (not once per document): organisations as (upper-case ticker, aliases), periods as a
    parsed mention or, naming none, the lower-cased text."""

    organisations: list[tuple[str, set[str]]]
    periods: list[PeriodMention | str]
    types: list[str]
    title: str
    metadata: dict[str, list[Any]]

    @classmethod
    def of(cls, filters: MetadataFilters) -> _Wanted:
        organisations = [str(v).strip() for v in _values(filters.organisation)]
        periods: list[PeriodMention | str] = []
        for value in (str(v) for v in _values(filters.period)):
            mentions = [m for m in parse_periods(value) if m.kind != "latest"]
            periods.append(mentions[0] if mentions else value.strip().lower())
        return cls(
            organisations=[(o.upper(), organisation_aliases(o)) for o in organisations],
            periods=periods,
            types=[str(v).strip().lower() for v in _values(filters.document_type)],
            title=(filters.title or "").strip().lower(),
            metadata={k: _values(v) for k, v in (filters.metadata or {}).items()},
        )


def _matches_filters(entry: _Entry, wanted: _Wanted) -> bool:
    if wanted.organisations and not any(
        _names_organisation(entry, ticker, aliases) for ticker, aliases in wanted.organisations
    ):
        return False
    if wanted.periods and not any(_in_period(entry, p) for p in wanted.periods):
        return False
    if wanted.types and (entry.document_type or "").lower() not in wanted.types:
        return False
    if wanted.title and wanted.title not in entry.title.lower():
        return False
    for key, choices in wanted.metadata.items():
        have_all = _values(entry.user_metadata.get(key))
        if not any(_same(h, w) for h in have_all for w in choices):
            return False
    return True


def _same(have: Any, wanted: Any) -> bool:
    # Compared as text: the CLI and the portal send every value as a string ("2024").
    return _as_text(have) == _as_text(wanted)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def _names_organisation(entry: _Entry, ticker: str, aliases: set[str]) -> bool:
    if ticker in entry.tickers:
        return True
    # "Pear" names "Pear Computers Inc.": the leading words of a name are enough.
    return any(
        alias == wanted or alias.startswith(wanted + " ")
        for wanted in aliases
        for alias in entry.aliases
    )


def _in_period(entry: _Entry, wanted: PeriodMention | str) -> bool:
    if isinstance(wanted, str):
        return (entry.period or "").lower() == wanted
    return period_matches(wanted, entry.period, entry.period_end)


# -- questions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocumentMatch:
    """The documents a question names, and what it named."""

    document_ids: list[str]
    organisations: list[str] = field(default_factory=list)
    periods: list[str] = field(default_factory=list)

    def describe(self) -> str:
        named = [*self.organisations, *self.periods]
        return f"{len(self.document_ids)} document(s) matching {', '.join(named)}"


def match_question(catalogue: DocumentCatalogue, question: str) -> DocumentMatch | None:
    """The documents ``question`` is about, by the organisations and periods it names and
    that the tenant's metadata knows; None when it names none of them (or names
    something no document matches)."""
    entries = catalogue.entries
    if not (catalogue.by_alias or catalogue.by_ticker or catalogue.dated):
        return None  # no document has an organisation or a period: nothing to match
    lowered = normalise_text(question)
    named: dict[str, _Entry] = {}
    names: set[str] = set()
    for ticker in set(re.findall(r"\b[A-Z]{2,5}\b", question)):
        for entry in catalogue.by_ticker.get(ticker, []):
            named[entry.id] = entry
            names.add(ticker)
    for alias, holders in catalogue.by_alias.items():
        if names_in(lowered, {alias}):
            for entry in holders:
                named[entry.id] = entry
            names.add(alias)
    by_org = list(named.values())
    # Of "apple" and "apple inc", say the shortest.
    names = {n for n in names if not any(o != n and n.startswith(o + " ") for o in names)}

    mentions = parse_periods(question)
    specific = [m for m in mentions if m.kind in ("quarter", "day")]
    years = [m for m in mentions if m.kind == "year"]
    # "the latest quarter compared with previous quarters" is about every quarter.
    latest = any(m.kind == "latest" for m in mentions) and not _ACROSS_PERIODS.search(lowered)
    pool = by_org or catalogue.dated
    chosen: list[_Entry] = []
    used: list[PeriodMention] = []
    for group in (specific, years):
        if not group:
            continue
        chosen = [e for e in pool if any(period_matches(m, e.period, e.period_end) for m in group)]
        if chosen:
            used = group
            break
    if not chosen and latest and by_org:
        newest = max(period_sort_key(e.period, e.period_end) for e in by_org)
        if newest != ("", ""):
            chosen = [e for e in by_org if period_sort_key(e.period, e.period_end) == newest]
            used = [m for m in mentions if m.kind == "latest"]
    if not chosen:
        if not by_org or len(by_org) == len(entries):
            return None  # nothing named, or a name every document shares
        chosen = by_org
    elif not by_org and len(chosen) == len(entries):
        return None
    return DocumentMatch(
        document_ids=[e.id for e in chosen],
        organisations=sorted(names),
        periods=[m.label for m in used],
    )
