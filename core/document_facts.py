"""What a document is about (title, organisations, period, type) as every stage sees it.

Ingestion extracts these facts (``ingest.metadata``) and the tenant may override them with
its own metadata; this module merges the two (:func:`facts_of`), writes the contextual
header that is indexed with every chunk (:func:`contextual_header`), and reads the
periods and organisation names that questions and filters are written in
(:func:`parse_periods`, :func:`organisation_aliases`), so that a filter value, a question
and a document's metadata are compared in one normal form.

Periods are labels: ``"2023-Q1"`` (a quarter, fiscal as the document or its file name
states it), ``"2023"`` (a year), ``"2023-03-15"`` (a day: a memo's or e-mail's date).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from core.models import Document


class DocumentRecord(Protocol):
    """What the facts are read from: a ``core.models.Document`` or a row of its columns
    (``FACT_COLUMNS``), so that hot paths need not load whole documents."""

    @property
    def title(self) -> str | None: ...
    @property
    def organisations(self) -> list[str]: ...
    @property
    def period(self) -> str | None: ...
    @property
    def period_end(self) -> date | None: ...
    @property
    def document_type(self) -> str | None: ...
    @property
    def user_metadata(self) -> dict[str, Any]: ...


# The documents columns the facts are made of.
FACT_COLUMNS = (
    Document.title,
    Document.organisations,
    Document.period,
    Document.period_end,
    Document.document_type,
    Document.user_metadata,
)

# User metadata keys that override an extracted fact (and are filterable by that name).
OVERRIDABLE = ("title", "organisation", "period", "document_type")
HEADER_SEPARATOR = " · "
# Changes whenever what the header says changes: indexes built with another are stale.
HEADER_VERSION = 1

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        [
            "january",
            "february",
            "march",
            "april",
            "may",
            "june",
            "july",
            "august",
            "september",
            "october",
            "november",
            "december",
        ]
    )
}
_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "1st": 1,
    "2nd": 2,
    "3rd": 3,
    "4th": 4,
}
# Legal-form words that are not part of what people call a company.
_LEGAL_FORMS = {
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "company",
    "ltd",
    "limited",
    "llc",
    "plc",
    "lp",
    "llp",
    "gmbh",
    "ag",
    "sa",
    "nv",
    "bv",
    "se",
    "holdings",
    "group",
    "and",
    "subsidiaries",
    "the",
}
# Names so common in questions that, alone, they must not count as naming a company.
_TOO_COMMON = {"the", "company", "group", "inc", "corp", "and", "of", "a", "an", "us", "our"}


@dataclass(frozen=True, slots=True)
class DocumentFacts:
    title: str | None = None
    organisations: list[str] = field(default_factory=list)
    period: str | None = None
    period_end: date | None = None
    document_type: str | None = None
    # True when the title was composed from the other facts (then the header omits it).
    title_composed: bool = False


def facts_of(document: DocumentRecord) -> DocumentFacts:
    """The document's facts: the tenant's metadata where it gives one, else extracted."""
    user: Mapping[str, Any] = document.user_metadata or {}
    organisations = list(document.organisations or [])
    if isinstance(user.get("organisation"), str) and user["organisation"].strip():
        organisations = [user["organisation"].strip()]
    elif isinstance(user.get("organisation"), list):
        organisations = [str(o).strip() for o in user["organisation"] if str(o).strip()]
    period = document.period
    period_end = document.period_end
    if isinstance(user.get("period"), str) and user["period"].strip():
        period = normalise_period(user["period"]) or user["period"].strip()
        period_end = None if period != document.period else period_end
    document_type = _text(user.get("document_type")) or document.document_type
    title = _text(user.get("title")) or document.title
    composed = title is not None and title == compose_title(
        document.organisations or [], document.document_type, document.period, document.period_end
    )
    return DocumentFacts(title, organisations, period, period_end, document_type, composed)


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def compose_title(
    organisations: list[str],
    document_type: str | None,
    period: str | None,
    period_end: date | None,
) -> str | None:
    """The title of a document that names its organisation and type: "Apple Inc. Form
    10-Q, Q1 2023 (period ended December 31, 2022)"."""
    if not organisations or not document_type:
        return None
    when = describe_period(period, period_end)
    return f"{', '.join(organisations[:2])} {document_type}" + (f", {when}" if when else "")


def describe_period(period: str | None, period_end: date | None) -> str | None:
    """How a period reads: "Q1 2023 (period ended December 31, 2022)", "March 15, 2023"."""
    label = period_label(period) if period else None
    ended = f"period ended {_long_date(period_end)}" if period_end else None
    if label and ended and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", period or ""):
        return f"{label} ({ended})"
    return label or ended


def period_label(period: str) -> str:
    """The label as people write it: "2023-Q1" → "Q1 2023", "2023-03-15" → "March 15, 2023"."""
    if m := re.fullmatch(r"(\d{4})-Q([1-4])", period):
        return f"Q{m.group(2)} {m.group(1)}"
    if m := re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", period):
        try:
            return _long_date(date(int(m.group(1)), int(m.group(2)), int(m.group(3))))
        except ValueError:
            return period
    return period


def _long_date(day: date) -> str:
    return f"{day.strftime('%B')} {day.day}, {day.year}"


def contextual_header(facts: DocumentFacts, heading_path: list[str] | None) -> str:
    """What is indexed before a chunk's text so that a chunk that never names its company
    or period is still found for them: "Apple Inc. · Form 10-Q · Q1 2023 (period ended
    December 31, 2022) · Item 2 > Net sales". Never part of a quote."""
    parts: list[str] = []
    headings = [h for h in heading_path or [] if h]
    # A title that is also the first heading (a paper's title, a page's first heading)
    # is said once.
    if facts.title and not facts.title_composed and facts.title not in headings[:1]:
        parts.append(facts.title)
    if facts.organisations:
        parts.append(", ".join(facts.organisations[:3]))
    if facts.document_type:
        parts.append(facts.document_type)
    when = describe_period(facts.period, facts.period_end)
    if when:
        parts.append(when)
    if headings:
        parts.append(" > ".join(headings))
    return HEADER_SEPARATOR.join(parts)


# -- organisations ---------------------------------------------------------------------


def organisation_aliases(name: str) -> set[str]:
    """Lower-case ways a question may name ``name``: "Amazon.com, Inc." → {"amazon.com inc",
    "amazon.com", "amazon"}; "NVIDIA CORPORATION" → {"nvidia corporation", "nvidia"}."""
    words = re.findall(r"[\w&.'-]+", name.lower())
    words = [w.strip(".'-") for w in words]
    words = [w for w in words if w]
    aliases: set[str] = set()
    if words:
        aliases.add(" ".join(words))
    core = list(words)
    while core and core[-1].replace(".", "") in _LEGAL_FORMS:
        core.pop()
    if core:
        aliases.add(" ".join(core))
        if core[-1].endswith(".com"):
            aliases.add(" ".join([*core[:-1], core[-1].removesuffix(".com")]))
    return {a for a in aliases if len(a) >= 2 and a not in _TOO_COMMON}


def names_in(text: str, aliases: set[str]) -> bool:
    """Whether ``text`` (a question) names one of ``aliases`` as whole words."""
    lowered = normalise_text(text)
    return any(re.search(rf"(?<![\w.]){re.escape(a)}(?![\w])", lowered) for a in aliases)


def normalise_text(text: str) -> str:
    """Lower case, typographic apostrophes straightened, possessive "'s" dropped."""
    lowered = text.lower().replace("\u2019", "'")
    return re.sub(r"'s\b", "", lowered)


# -- periods ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodMention:
    """A period a question or filter names: a quarter ("2023-Q1"), a year ("2023"), a day,
    or ``latest`` ("the most recent 10-Q")."""

    label: str
    kind: str  # "quarter" | "year" | "day" | "latest"


_QUARTER_PATTERNS = (
    # Q1 2023, Q1 FY2023, Q1'23, 1Q23, Q1-2023
    re.compile(
        r"\b(?:q([1-4])|([1-4])q)\s*[-' ]?\s*(?:of\s+)?"
        r"(?:fy\s*|fiscal\s+(?:year\s+)?)?'?(\d{4}|\d{2})\b"
    ),
    # 2023 Q1, 2023-Q1, FY2023 Q1
    re.compile(r"\b(?:fy\s*)?(\d{4})\s*[- ]?\s*q([1-4])\b"),
    # first quarter of (fiscal) 2023
    re.compile(
        r"\b(first|second|third|fourth|1st|2nd|3rd|4th)\s+(?:fiscal\s+)?quarter\s+(?:of\s+)?"
        r"(?:fiscal\s+(?:year\s+)?|fy\s*)?(\d{4})\b"
    ),
)
_YEAR = re.compile(r"\b(?:fiscal\s+(?:year\s+)?|fy\s*'?)?((?:19|20)\d{2})\b")
_DAY = re.compile(
    r"\b(january|february|march|april|may|june|july|august|september|october|november|"
    r"december)\s+(\d{1,2}),?\s+(\d{4})\b"
)
_ISO_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_LATEST = re.compile(
    r"\b(?:latest|most\s+recent|newest|last|current)\s+(?:\w+\s+){0,2}?"
    r"(?:10-?q|10-?k|filing|report|quarter|period|document|version|memo|statement)s?\b"
)


def _year(text: str) -> int:
    value = int(text)
    return value + 2000 if value < 100 else value


def parse_periods(text: str) -> list[PeriodMention]:
    """The periods ``text`` names, most specific first: quarters, days, then years not
    already part of a quarter or day, and ``latest``."""
    lowered = normalise_text(text)
    mentions: list[PeriodMention] = []
    taken: list[tuple[int, int]] = []
    for pattern in _QUARTER_PATTERNS:
        for m in pattern.finditer(lowered):
            groups = [g for g in m.groups() if g]
            if pattern is _QUARTER_PATTERNS[0]:
                quarter, year = groups[0], groups[1]
            elif pattern is _QUARTER_PATTERNS[1]:
                year, quarter = groups[0], groups[1]
            else:
                quarter, year = str(_ORDINALS[groups[0]]), groups[1]
            mentions.append(PeriodMention(f"{_year(year)}-Q{quarter}", "quarter"))
            taken.append(m.span())
    for m in _DAY.finditer(lowered):
        try:
            day = date(int(m.group(3)), _MONTHS[m.group(1)], int(m.group(2)))
        except ValueError:
            continue
        mentions.append(PeriodMention(day.isoformat(), "day"))
        taken.append(m.span())
    for m in _ISO_DAY.finditer(lowered):
        try:
            day = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
        mentions.append(PeriodMention(day.isoformat(), "day"))
        taken.append(m.span())
    for m in _YEAR.finditer(lowered):
        if any(start <= m.start(1) < end for start, end in taken):
            continue
        mentions.append(PeriodMention(m.group(1), "year"))
    if _LATEST.search(lowered):
        mentions.append(PeriodMention("latest", "latest"))
    return list(dict.fromkeys(mentions))


def normalise_period(text: str) -> str | None:
    """A filter's or a tenant's period in the normal form ("Q1 2023" → "2023-Q1"), or None
    when it names none."""
    mentions = [m for m in parse_periods(text) if m.kind != "latest"]
    return mentions[0].label if mentions else None


def period_matches(mention: PeriodMention, period: str | None, period_end: date | None) -> bool:
    """Whether a document whose period is ``period`` (ended ``period_end``) is one that
    ``mention`` names. ``latest`` is decided among documents, not here."""
    if mention.kind == "quarter":
        return period == mention.label
    if mention.kind == "year":
        return (period or "").startswith(mention.label) or (
            period_end is not None and str(period_end.year) == mention.label
        )
    if mention.kind == "day":
        return period == mention.label or (
            period_end is not None and period_end.isoformat() == mention.label
        )
    return False


def period_sort_key(period: str | None, period_end: date | None) -> tuple[str, str]:
    """Orders documents by the period they cover (for "the latest")."""
    return (period_end.isoformat() if period_end else "", period or "")
