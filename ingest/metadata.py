"""Document metadata extracted at ingestion, without an LLM: from the cover page (the first
pages' text), the running headers the PDF parser found, the file name and the file's own
metadata. Reliability on the SEC 10-Q set is measured in ``tests/ingest/test_metadata.py``
and reported in the README.

- organisations: the registrant named on an SEC cover page ("… (Exact name of registrant as
  specified in its charter)", or the name after the commission file number), else a
  company name (a name ending in Inc., Corporation, Ltd, …) in the running headers, else
  the first one on the first page. The trading symbols on the cover are kept as aliases.
- period: a quarter written in the file name ("2023 Q1 AAPL.pdf") or the running headers
  ("Q1 2023 Form 10-Q"), else the quarter that holds most of the three months ending on
  the stated period end ("For the quarterly period ended July 30, 2023" → 2023-Q2), the
  year of a fiscal year end, or a memo's / e-mail's date.
- document_type: "Form 10-Q" (any SEC form named on the cover), "email", "memo".
- title: the file's own title metadata when it looks like one, else composed from the
  facts above ("Apple Inc. Form 10-Q, Q1 2023 (period ended December 31, 2022)"), else the
  first heading, else the file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.document_facts import compose_title, parse_periods
from core.models import Chunk, Document, DocumentStatus
from core.tenancy import TenantScope, scoped
from ingest.elements import ParsedElement

# How much of the document's start is its cover (characters).
_COVER_CHARS = 8000
_LEGAL_FORM = (
    r"(?i:Inc\.?|Incorporated|Corporation|Corp\.?|Company|Co\.|Ltd\.?|Limited|LLC|L\.L\.C\.|"
    r"plc|PLC|LP|L\.P\.|LLP|GmbH|AG|S\.A\.|N\.V\.|SE|Holdings)"
)
_ORG_NAME = re.compile(
    rf"\b((?:[A-Z][\w&.'-]*,?\s+){{0,5}}?[A-Z][\w&.'-]*,?\s+{_LEGAL_FORM})(?![\w])"
)
_REGISTRANT = re.compile(
    r"([^\n]{2,120})\n\s*\(?\s*exact name of (?:the )?registrant", re.IGNORECASE
)
_FILE_NUMBER_NEXT = re.compile(
    r"commission file (?:number|no\.?)[:\s]*[\d-]+\s*\n\s*([^\n]{2,120})", re.IGNORECASE
)
# Cover lines that are not a name (the name itself may be cut as a running header).
_COVER_BOILERPLATE = re.compile(
    r"commission file|file number|registrant|securities|washington|\d{3}-\d|^\(", re.I
)
_SEC_FORM = re.compile(r"\bFORM\s+(10-Q|10-K|8-K|20-F|40-F|6-K|S-1|S-4|DEF\s+14A)\b")
_PERIOD_END = re.compile(
    r"for the (quarterly period|fiscal year|year|fiscal quarter|quarter|transition period)"
    r" ended[:\s]+([A-Z][a-z]+\s+\d{1,2},?\s+\d{4})",
    re.IGNORECASE,
)
_TICKER = re.compile(
    r"par value[^\n]{0,60}?\s([A-Z]{1,5})\s+(?:The\s+)?(?:Nasdaq|NASDAQ|New York|NYSE|Nyse)"
)
_DATE_LINE = re.compile(r"^\s*date\s*:\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_MEMO = re.compile(
    r"^\s*(?:memorandum|memo)\b|^\s*to\s*:.*\n\s*from\s*:", re.IGNORECASE | re.MULTILINE
)
_FILENAME_QUARTER = re.compile(
    r"(?<!\d)(\d{4})[ _.-]?Q([1-4])(?!\d)|Q([1-4])[ _.-]?(\d{4})(?!\d)", re.I
)
_BAD_TITLE = re.compile(
    r"^(untitled|microsoft word|word document|document\d*|slide \d+|presentation\d*)\b"
    r"|\.(docx?|pdf|pptx?|xlsx?)$",
    re.I,
)
_EMAIL_TYPES = {"EML", "MSG"}


@dataclass(slots=True)
class ExtractedMetadata:
    title: str | None = None
    organisations: list[str] = field(default_factory=list)
    tickers: list[str] = field(default_factory=list)
    period: str | None = None
    period_end: date | None = None
    document_type: str | None = None
    # Where each fact came from ("cover", "running header", "file name"...), for the API.
    sources: dict[str, str] = field(default_factory=dict)

    def columns(self) -> dict[str, Any]:
        """The ``documents`` columns these facts fill (the title apart: it may be kept)."""
        return {
            "organisations": self.organisations,
            "period": self.period,
            "period_end": self.period_end,
            "document_type": self.document_type,
        }

    def as_context(self) -> dict[str, Any]:
        """What goes into ``documents.context`` beside the columns."""
        return {"tickers": self.tickers, "metadata_sources": self.sources}


def extract_metadata(
    elements: list[ParsedElement],
    context: dict[str, Any],
    filename: str,
    file_kind: str,
    file_title: str | None = None,
    *,
    use_filename: bool = True,
) -> ExtractedMetadata:
    """The facts a document states about itself. ``file_kind`` is the detected type
    ("PDF", "EML"...); ``file_title`` its own title metadata. ``use_filename=False`` reads
    the content alone (to measure how much the file name adds)."""
    cover = _cover_text(elements)
    headers = [h for h in context.get("running_headers") or [] if isinstance(h, str)]
    out = ExtractedMetadata()

    if m := _SEC_FORM.search(cover[:3000]):
        out.document_type = "Form " + " ".join(m.group(1).split())
        out.sources["document_type"] = "cover"
    elif file_kind in _EMAIL_TYPES:
        out.document_type, out.sources["document_type"] = "email", "file type"
    elif _MEMO.search(cover[:1500]):
        out.document_type, out.sources["document_type"] = "memo", "cover"

    organisation, where = _organisation(cover, headers)
    if organisation:
        out.organisations, out.sources["organisations"] = [organisation], where
        out.tickers = list(dict.fromkeys(_TICKER.findall(cover[:_COVER_CHARS])))[:3]

    ended = _PERIOD_END.search(cover)
    if ended:
        out.period_end = _parse_date(ended.group(2))
    out.period, out.sources["period"] = _period(
        filename if use_filename else "", headers, cover, ended, out
    )
    if out.period is None:
        del out.sources["period"]

    composed = compose_title(out.organisations, out.document_type, out.period, out.period_end)
    if composed:
        out.title, out.sources["title"] = composed, "composed"
    elif file_title and _looks_like_title(file_title):
        out.title, out.sources["title"] = " ".join(file_title.split())[:1024], "file metadata"
    elif first := _first_heading(elements):
        out.title, out.sources["title"] = first, "first heading"
    else:
        out.title, out.sources["title"] = Path(filename).stem[:1024], "file name"
    return out


def file_title(path: Path, file_kind: str) -> str | None:
    """The title a PDF or a Word file carries in its own metadata, if any."""
    try:
        if file_kind == "PDF":
            import pypdfium2

            pdf = pypdfium2.PdfDocument(str(path))
            try:
                return str(pdf.get_metadata_value("Title") or "").strip() or None
            finally:
                pdf.close()
        if file_kind == "DOCX":
            import docx

            return str(docx.Document(str(path)).core_properties.title or "").strip() or None
    except Exception:  # unreadable metadata is no title, never a failed ingestion
        return None
    return None


def _looks_like_title(text: str) -> bool:
    """Not an accession number ("0000320193-22-000070"), a file name or a tool's default
    ("Word Document", "Microsoft Word - draft.doc")."""
    words = re.findall(r"[A-Za-z]{2,}", text)
    return len(words) >= 2 and not _BAD_TITLE.search(text.strip())


def _cover_text(elements: list[ParsedElement]) -> str:
    """The first pages' text, one element per line, up to ``_COVER_CHARS``."""
    lines: list[str] = []
    size = 0
    for element in elements:
        if element.page is not None and element.page > 3:
            break
        lines.append(element.text)
        size += len(element.text) + 1
        if size >= _COVER_CHARS:
            break
    return "\n".join(lines)[:_COVER_CHARS]


def _organisation(cover: str, headers: list[str]) -> tuple[str | None, str]:
    for pattern in (_REGISTRANT, _FILE_NUMBER_NEXT):
        if m := pattern.search(cover):
            name = _clean_name(m.group(1))
            if re.search(r"[A-Za-z]{2}", name) and not _COVER_BOILERPLATE.search(name):
                return name, "cover"
    for header in headers:
        if m := _ORG_NAME.search(header):
            return _clean_name(m.group(1)), "running header"
    if m := _ORG_NAME.search(cover[:3000]):
        return _clean_name(m.group(1)), "first page"
    return None, ""


def _clean_name(raw: str) -> str:
    name = " ".join(raw.split()).strip(" ,;:|")
    # Cover lines sometimes carry a neighbouring column ("Apple Inc.   California").
    name = re.split(r"\s{3,}|\s\|\s", name)[0]
    if name.isupper() and len(name) > 4:
        # "MICROSOFT CORPORATION" → "Microsoft Corporation"; short names stay ("IBM").
        name = " ".join(w if len(w) <= 3 and w.isalpha() and not _is_form(w) else _title(w)
                        for w in name.split())  # fmt: skip
    return name[:255]


def _title(word: str) -> str:
    # "AMAZON.COM," → "Amazon.com,", not "Amazon.Com,".
    return re.sub(r"\.Com\b", ".com", word.title())


def _is_form(word: str) -> bool:
    return word.rstrip(".,").lower() in {"inc", "co", "ltd", "llc", "plc", "corp"}


def _period(
    filename: str,
    headers: list[str],
    cover: str,
    ended: re.Match[str] | None,
    out: ExtractedMetadata,
) -> tuple[str | None, str]:
    if m := _FILENAME_QUARTER.search(Path(filename).stem):
        year, quarter = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        return f"{year}-Q{quarter}", "file name"
    for header in headers:
        quarters = [p for p in parse_periods(header) if p.kind == "quarter"]
        if quarters:
            return quarters[0].label, "running header"
    if out.period_end is not None and ended is not None:
        kind = ended.group(1).lower()
        if "quarter" in kind:
            # The quarter holding most of the three months that end on that day: fiscal
            # quarters end late in a calendar month or early in the next (NVIDIA's "July
            # 30, 2023" is its second calendar quarter, Intel's "April 1, 2023" its first).
            middle = out.period_end - timedelta(days=45)
            return f"{middle.year}-Q{(middle.month - 1) // 3 + 1}", "period end"
        if "year" in kind:
            return str(out.period_end.year), "period end"
    if out.document_type in {"email", "memo"} and (m := _DATE_LINE.search(cover[:2000])):
        day = _parse_date(m.group(1))
        if day is not None:
            return day.isoformat(), "date line"
    return None, ""


def _parse_date(text: str) -> date | None:
    days = [p for p in parse_periods(text) if p.kind == "day"]
    if not days:
        return None
    return date.fromisoformat(days[0].label)


def _first_heading(elements: list[ParsedElement]) -> str | None:
    for element in elements[:50]:
        if element.type == "Title" and len(element.text.strip()) > 3:
            return " ".join(element.text.split())[:1024]
    return None


def refresh_metadata(session: Session, scope: TenantScope, *, only_missing: bool = True) -> int:
    """Extract the metadata of the tenant's documents again from their stored chunks (their
    first pages stand in for the parsed cover) and ``documents.context``, without
    re-parsing: for documents ingested before extraction existed (``ragkb reindex`` runs
    it, then the rebuilt index carries the new headers). ``only_missing``: leave documents
    that already have an organisation, a period or a type. Returns how many changed."""
    stmt = scoped(select(Document), Document, scope).where(Document.status == DocumentStatus.READY)
    changed = 0
    for document in session.scalars(stmt):
        if only_missing and (document.organisations or document.period or document.document_type):
            continue
        chunks = session.scalars(
            scoped(select(Chunk), Chunk, scope)
            .where(Chunk.document_id == document.id, Chunk.version == document.version)
            .order_by(Chunk.ordinal)
            .limit(12)
        )
        elements = [
            ParsedElement("NarrativeText", line, chunk.page_start, list(chunk.heading_path or []))
            for chunk in chunks
            for line in chunk.text.splitlines()
        ]
        kind = "EML" if document.media_type == "message/rfc822" else ""
        facts = extract_metadata(elements, document.context or {}, document.filename, kind)
        for column, value in facts.columns().items():
            setattr(document, column, value)
        if not document.title:
            document.title = facts.title
        document.context = {**(document.context or {}), **facts.as_context()}
        changed += 1
    return changed
