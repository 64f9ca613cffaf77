"""Parse a text PDF into elements, keeping tables whole.

unstructured's ``fast`` strategy reads a PDF as text runs: a financial statement comes out
as a label here and its figures several elements later, and no ``Table`` is ever produced
(``hi_res`` would need layout models from a hub). This parser reads positioned lines with
PDFium (``pdf_layout``), finds tables by alignment (``pdf_tables``) and emits the same
element model as unstructured (``Title``, ``NarrativeText``, ``ListItem``, ``Table`` with
its HTML), so chunking and everything after it stay the same.

- Running headers and footers (the company name and form on every page, page numbers,
  "Table of Contents") are recognised by repetition across pages and kept out of the
  content; they are returned as document context, with each page's printed number.
- Each page's table detection has a time bound; a page whose detection fails or runs too
  long is read as plain text, and the document goes on.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import median

import pypdfium2 as pdfium

from ingest.elements import ParsedElement, heading_label
from ingest.pdf_layout import Line, PageLines, read_page
from ingest.pdf_tables import Table, TableTimeout, find_tables

log = logging.getLogger("ragkb.ingest")

# How many lines at the top and at the bottom of a page may be running headers/footers.
_BAND_LINES = 2
_PAGE_NUMBER = re.compile(
    r"^(?:page\s+)?[-–]?\s*(\d{1,4}|[ivxlc]{1,7})\s*[-–]?(?:\s+of\s+\d+)?$", re.IGNORECASE
)
_TRAILING_NUMBER = re.compile(r"(?:^|[\s|])(\d{1,4})$")
_LEADING_NUMBER = re.compile(r"^(\d{1,4})(?:[\s|]|$)")
_BULLET = re.compile(r"^[•●▪‣◦\-–*]\s+")
_HEADING_NAME = re.compile(r"^(?:part\s+[ivx]+\b|item\s+\d+[a-z]?\b|note\s+\d+\b)", re.IGNORECASE)
_PAGE_REFERENCE = re.compile(r"^(?:page\s+)?\d{1,3}$", re.IGNORECASE)
# Above this share of characters without a position, the document goes to unstructured.
_MAX_UNPLACED = 0.005
_SENTENCE_END = re.compile(r"[.!?;,]$")


class LayoutUnreliable(Exception):
    """The PDF's text cannot be laid out from PDFium's positions; another reader must."""


@dataclass(slots=True)
class PdfParse:
    elements: list[ParsedElement]
    page_count: int
    running_headers: list[str]
    page_labels: dict[int, str]  # physical page → printed page number, where printed


def parse_pdf(path: Path, *, page_timeout_s: float, document: str = "") -> PdfParse:
    """Read every page of the PDF at ``path``. ``document`` names it in log lines."""
    pdf = pdfium.PdfDocument(str(path))
    try:
        pages = [read_page(pdf, i) for i in range(len(pdf))]
    finally:
        pdf.close()
    characters = sum(p.characters for p in pages)
    unplaced = sum(p.unplaced for p in pages)
    if unplaced > max(20, characters * _MAX_UNPLACED):
        raise LayoutUnreliable(
            f"PDFium could not place {unplaced} of {characters} characters (fonts without "
            "metrics): the reading order cannot be trusted"
        )
    running = _running_lines(pages)
    labels = {p.number: label for p in pages if (label := _printed_number(p, running))}
    builder = _ElementBuilder(_body_size(pages))
    for page in pages:
        content = [line for line in page.lines if _key(line) not in running]
        content = [line for line in content if not _is_page_number(line, page)]
        tables = _tables_within(page, content, page_timeout_s, document)
        builder.add_page(page.number, labels.get(page.number), content, tables)
    return PdfParse(
        elements=builder.elements,
        page_count=len(pages),
        running_headers=_context(pages, running),
        page_labels=labels,
    )


def _tables_within(
    page: PageLines, lines: list[Line], timeout_s: float, document: str
) -> list[Table]:
    """The page's tables, or none when detection fails or overruns (plain text then)."""
    started = time.monotonic()
    try:
        tables = find_tables(lines, page.width, deadline=started + timeout_s)
    except TableTimeout:
        log.warning(
            "document %s page %d: table detection ran over %.1f s; reading it as plain text",
            document,
            page.number,
            timeout_s,
        )
        return []
    except Exception:
        log.warning(
            "document %s page %d: table detection failed; reading it as plain text",
            document,
            page.number,
            exc_info=True,
        )
        return []
    return tables


def _key(line: Line) -> str:
    """A line's identity across pages: digits do not count (page numbers change)."""
    return re.sub(r"\d+", "#", " ".join(line.text.lower().split()))


def _bands(page: PageLines) -> Iterator[Line]:
    """The first and last lines of the page, where running headers and footers live."""
    lines = page.lines
    yield from lines[:_BAND_LINES]
    yield from lines[max(_BAND_LINES, len(lines) - _BAND_LINES) :]


def _running_lines(pages: list[PageLines]) -> set[str]:
    """Keys of lines that repeat in the header or footer band of many pages."""
    if len(pages) < 3:
        return set()
    seen: Counter[str] = Counter()
    for page in pages:
        seen.update({_key(line) for line in _bands(page)})
    needed = max(3, int(len(pages) * 0.3))
    return {key for key, n in seen.items() if n >= needed and key.strip("# |")}


def _is_page_number(line: Line, page: PageLines) -> bool:
    in_band = any(line is banded for banded in _bands(page))
    return in_band and bool(_PAGE_NUMBER.match(line.text.strip()))


def _printed_number(page: PageLines, running: set[str]) -> str | None:
    """The page number printed on the page (a bare number or the number at the end of a
    running footer), else the PDF's own page label when it differs from the position."""
    for line in reversed(list(_bands(page))):
        text = line.text.strip()
        if _is_page_number(line, page):
            match = _PAGE_NUMBER.match(text)
            if match:
                return match.group(1)
        if _key(line) in running:
            match = _TRAILING_NUMBER.search(text) or _LEADING_NUMBER.search(text)
            if match:
                return match.group(1)
    if page.label and page.label != str(page.number):
        return page.label
    return None


def _context(pages: list[PageLines], running: set[str]) -> list[str]:
    """The running headers and footers as text (page numbers removed), most frequent first."""
    counts: Counter[str] = Counter()
    for page in pages:
        for line in _bands(page):
            if _key(line) in running:
                text = _TRAILING_NUMBER.sub("", " ".join(line.text.split())).strip(" |")
                if text:
                    counts[text] += 1
    return [text for text, _ in counts.most_common(5)]


def _body_size(pages: list[PageLines]) -> float:
    sizes = [line.size for page in pages for line in page.lines]
    return median(sizes) if sizes else 10.0


class _ElementBuilder:
    """Turns a page's lines and tables into elements, keeping the heading path."""

    def __init__(self, body_size: float) -> None:
        self.body_size = body_size
        self.elements: list[ParsedElement] = []
        self.headings: list[tuple[float, str]] = []  # (strength, label)

    def add_page(
        self, number: int, label: str | None, lines: list[Line], tables: list[Table]
    ) -> None:
        starts = {t.first_line: t for t in tables}
        paragraph: list[Line] = []
        i = 0
        while i < len(lines):
            table = starts.get(i)
            if table is not None:
                self._paragraph(paragraph, number, label)
                paragraph = []
                self._table(table, number, label)
                i = table.last_line + 1
                continue
            line = lines[i]
            if paragraph and self._breaks(paragraph[-1], line):
                self._paragraph(paragraph, number, label)
                paragraph = []
            paragraph.append(line)
            i += 1
        self._paragraph(paragraph, number, label)

    def _breaks(self, previous: Line, line: Line) -> bool:
        """Whether ``line`` starts a new paragraph after ``previous``."""
        height = max(previous.bottom - previous.top, 1.0)
        if line.top - previous.bottom > 0.8 * height:
            return True  # a blank line's worth of space
        if abs(line.size - previous.size) > 0.6 or previous.bold != line.bold:
            return True
        if _BULLET.match(line.text) or self._is_heading([line]) or self._is_heading([previous]):
            return True
        return previous.text.rstrip().endswith((".", ":")) and line.x0 > previous.x0 + height

    def _is_heading(self, lines: list[Line]) -> bool:
        if len(lines) != 1:
            return False
        line = lines[0]
        text = line.text.strip()
        words = text.split()
        if not any(ch.isalpha() for ch in text) or len(words) > 14 or _SENTENCE_END.search(text):
            return False
        if any(ch in text for ch in "☐☒☑"):
            return False  # a form's check box line
        if len(line.cells) > 1 and _PAGE_REFERENCE.match(line.cells[-1].text.strip()):
            return False  # a table-of-contents entry: "Item 1A. Risk Factors ... 21"
        figures = sum(1 for w in words if not any(ch.isalpha() for ch in w))
        if figures * 3 > len(words):
            return False  # a chart's labels ("$18.4 0.1 (3.6)"), not a heading
        if _HEADING_NAME.match(text):
            return True
        letters = [ch for ch in text if ch.isalpha()]
        upper = len(letters) >= 4 and all(ch.isupper() for ch in letters)
        return line.bold or upper or line.size > self.body_size + 0.8

    def _strength(self, line: Line) -> float:
        """Higher for more prominent headings; a heading closes those no stronger."""
        text = line.text.strip()
        letters = [ch for ch in text if ch.isalpha()]
        return (
            line.size * 10
            + (40 if _HEADING_NAME.match(text) and text.lower().startswith("part") else 0)
            + (20 if _HEADING_NAME.match(text) and text.lower().startswith("item") else 0)
            + (3 if line.bold else 0)
            + (2 if letters and all(ch.isupper() for ch in letters) else 0)
        )

    def _path(self) -> list[str]:
        return [label for _, label in self.headings]

    def _paragraph(self, lines: list[Line], page: int, label: str | None) -> None:
        if not lines:
            return
        text = _join_lines(lines)
        if not text:
            return
        if self._is_heading(lines):
            strength = self._strength(lines[0])
            if text.lower().startswith("part "):
                self.headings.clear()  # "PART I", "PART II": a new top level
            while self.headings and self.headings[-1][0] <= strength:
                self.headings.pop()
            self.headings.append((strength, heading_label(text)))
            self.elements.append(ParsedElement("Title", text, page, self._path(), page_label=label))
            return
        kind = "ListItem" if _BULLET.match(text) else "NarrativeText"
        if kind == "ListItem":
            text = _BULLET.sub("", text)
        self.elements.append(ParsedElement(kind, text, page, self._path(), page_label=label))

    def _table(self, table: Table, page: int, label: str | None) -> None:
        self.elements.append(
            ParsedElement(
                "Table",
                table.text(),
                page,
                self._path(),
                table_html=table.html(),
                page_label=label,
                caption=self._caption(page),
            )
        )

    def _caption(self, page: int) -> str | None:
        """The title lines right before a table on its page ("CONSOLIDATED STATEMENTS OF
        OPERATIONS", "(in millions)"), which a table chunk repeats."""
        parts: list[str] = []
        for element in reversed(self.elements):
            if (
                element.page != page
                or element.type in {"Table", "Title"}
                or len(element.text) > 200
            ):
                break
            parts.append(element.text)
            if len(parts) == 3:
                break
        return " · ".join(reversed(parts)) or None


def _join_lines(lines: list[Line]) -> str:
    """A paragraph's lines as one string; a word hyphenated at a line end is rejoined."""
    text = ""
    for line in lines:
        part = " ".join(line.text.split())
        if text.endswith("-") and part[:1].islower():
            text = text[:-1] + part
        else:
            text = f"{text} {part}" if text else part
    return text
