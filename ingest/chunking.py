"""Heading-aware chunking in tokens of the embedding model's tokenizer.

The document's extracted text is its elements joined by blank lines; every chunk is an
exact slice of it (``char_start``/``char_end``), except table parts, which repeat the
table's header row and point at the whole table's span.

- A section starts at each title; a chunk never starts in the middle of one section and
  ends in another, except that a section shorter than ``min_tokens`` is combined with its
  own subsections that follow (and a lone heading with whatever follows it), so that the
  chunk's heading path (its first section's) stays true for all of its text.
- A section longer than ``max_tokens`` is cut into windows that overlap by
  ``overlap_tokens``, cut preferably where an element starts, else after a sentence.
- A table is its own chunk when it fits; otherwise it is split by rows, each part
  repeating the header row (text and HTML).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest.parsing import ParsedElement
from ingest.tokens import count_tokens, token_offsets

SEPARATOR = "\n\n"
_SENTENCE_END = re.compile(r"[.!?:;。！？]$")


@dataclass(slots=True)
class ChunkDraft:
    ordinal: int
    text: str
    char_start: int
    char_end: int
    token_count: int
    heading_path: list[str]
    element_types: list[str]
    page_start: int | None
    page_end: int | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ChunkingOptions:
    max_tokens: int = 240
    overlap_tokens: int = 32
    min_tokens: int = 64

    def __post_init__(self) -> None:
        if self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError("chunk overlap must be under half the chunk size")


@dataclass(slots=True)
class _Block:
    kind: str  # "text" or "table"
    first: int  # index of its first element
    last: int  # index of its last element (inclusive)
    heading_path: list[str]


class _Layout:
    """The document text and where each element sits in it."""

    def __init__(self, elements: Sequence[ParsedElement]) -> None:
        self.elements = elements
        self.starts: list[int] = []
        self.ends: list[int] = []
        parts: list[str] = []
        position = 0
        for element in elements:
            if parts:
                parts.append(SEPARATOR)
                position += len(SEPARATOR)
            self.starts.append(position)
            parts.append(element.text)
            position += len(element.text)
            self.ends.append(position)
        self.text = "".join(parts)

    def covering(self, start: int, end: int) -> range:
        """Indices of the elements overlapping ``[start, end)``."""
        first = bisect.bisect_right(self.ends, start)
        last = bisect.bisect_left(self.starts, end)
        return range(first, last)

    def describe(self, start: int, end: int) -> tuple[list[str], int | None, int | None]:
        types: list[str] = []
        pages: list[int] = []
        for i in self.covering(start, end):
            element = self.elements[i]
            if element.type not in types:
                types.append(element.type)
            if element.page is not None:
                pages.append(element.page)
        return types, (min(pages) if pages else None), (max(pages) if pages else None)


def extracted_text(elements: Sequence[ParsedElement]) -> str:
    """The text that chunk character offsets point into."""
    return SEPARATOR.join(e.text for e in elements)


def chunk_elements(
    elements: Sequence[ParsedElement], tokenizer: Any, options: ChunkingOptions
) -> list[ChunkDraft]:
    layout = _Layout(elements)
    chunker = _Chunker(layout, tokenizer, options)
    pending: list[_Block] = []
    pending_tokens = 0
    for block in _blocks(elements):
        if block.kind == "table":
            chunker.flush(pending)
            pending, pending_tokens = [], 0
            chunker.table(block)
            continue
        tokens = count_tokens(tokenizer, chunker.block_text(block))
        if pending and pending_tokens < options.min_tokens:
            # Only into its own subsections (or after a lone heading): a chunk's heading
            # path must stay true for all of its text.
            nested = block.heading_path[: len(pending[0].heading_path)] == pending[0].heading_path
            lone_heading = len(pending) == 1 and pending[0].first == pending[0].last
            if (nested or lone_heading) and pending_tokens + tokens <= options.max_tokens:
                pending.append(block)
                pending_tokens += tokens
                continue
        chunker.flush(pending)
        pending, pending_tokens = [block], tokens
    chunker.flush(pending)
    return chunker.chunks


def _blocks(elements: Sequence[ParsedElement]) -> list[_Block]:
    """Sections (from one title to the next) and tables, in document order."""
    blocks: list[_Block] = []
    current: _Block | None = None
    for i, element in enumerate(elements):
        if element.type == "Table":
            current = None
            blocks.append(_Block("table", i, i, element.heading_path))
            continue
        starts_section = element.type == "Title" or (
            current is not None and element.heading_path != current.heading_path
        )
        if current is None or starts_section:
            current = _Block("text", i, i, element.heading_path)
            blocks.append(current)
        else:
            current.last = i
    return blocks


class _Chunker:
    def __init__(self, layout: _Layout, tokenizer: Any, options: ChunkingOptions) -> None:
        self.layout = layout
        self.tokenizer = tokenizer
        self.options = options
        self.chunks: list[ChunkDraft] = []

    def block_text(self, block: _Block) -> str:
        return self.layout.text[self.layout.starts[block.first] : self.layout.ends[block.last]]

    def _emit(
        self,
        start: int,
        end: int,
        tokens: int,
        heading_path: list[str],
        text: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        types, page_start, page_end = self.layout.describe(start, end)
        self.chunks.append(
            ChunkDraft(
                ordinal=len(self.chunks),
                text=self.layout.text[start:end] if text is None else text,
                char_start=start,
                char_end=end,
                token_count=tokens,
                heading_path=list(heading_path),
                element_types=types,
                page_start=page_start,
                page_end=page_end,
                extra=extra or {},
            )
        )

    def flush(self, run: list[_Block]) -> None:
        """Chunk consecutive text blocks: one chunk when they fit, else overlapping windows."""
        if not run:
            return
        start = self.layout.starts[run[0].first]
        end = self.layout.ends[run[-1].last]
        self._windows(start, end, run[0].heading_path)

    def _windows(self, start: int, end: int, heading_path: list[str]) -> None:
        text = self.layout.text[start:end]
        offsets = token_offsets(self.tokenizer, text)
        if not offsets:
            return
        limit = self.options.max_tokens
        if len(offsets) <= limit:
            self._emit(start, end, len(offsets), heading_path)
            return
        boundaries = {self.layout.starts[i] - start for i in self.layout.covering(start, end)}
        first = 0
        while first < len(offsets):
            last = min(first + limit, len(offsets))
            if last < len(offsets):
                last = self._best_cut(text, offsets, first, last, boundaries)
            self._emit(
                start + offsets[first][0],
                start + offsets[last - 1][1],
                last - first,
                heading_path,
            )
            if last >= len(offsets):
                break
            # The next window repeats the last tokens of this one, from a word start.
            first = max(last - self.options.overlap_tokens, first + 1)
            while first < last and not self._starts_word(text, offsets, first):
                first += 1

    def _best_cut(
        self,
        text: str,
        offsets: list[tuple[int, int]],
        first: int,
        last: int,
        boundaries: set[int],
    ) -> int:
        """Where to end a window (exclusive): an element start if one lies in the second
        half of the window, else just after a sentence, else a word boundary."""
        floor = first + (last - first) // 2
        for i in range(last, floor, -1):
            if offsets[i][0] in boundaries:
                return i
        for i in range(last, floor, -1):
            if _SENTENCE_END.search(text[offsets[i - 1][0] : offsets[i - 1][1]]):
                return i
        for i in range(last, floor, -1):
            if self._starts_word(text, offsets, i):
                return i
        return last

    @staticmethod
    def _starts_word(text: str, offsets: list[tuple[int, int]], i: int) -> bool:
        """Whether token ``i`` starts a word (is not a ``##`` continuation of the previous)."""
        if i <= 0 or i >= len(offsets):
            return True
        begin = offsets[i][0]
        return begin == 0 or not (text[begin - 1].isalnum() and text[begin].isalnum())

    def table(self, block: _Block) -> None:
        element = self.layout.elements[block.first]
        start, end = self.layout.starts[block.first], self.layout.ends[block.first]
        tokens = count_tokens(self.tokenizer, element.text)
        html = element.table_html
        if tokens <= self.options.max_tokens:
            extra = {"table_html": html} if html else {}
            self._emit(start, end, tokens, block.heading_path, extra=extra)
            return
        rows = _table_rows(html) if html else []
        if len(rows) < 2:
            self._windows(start, end, block.heading_path)
            return
        header, body = rows[0], rows[1:]
        part: list[tuple[str, str]] = []
        part_tokens = count_tokens(self.tokenizer, header[0])
        header_tokens = part_tokens
        first_row = 1
        for number, row in enumerate(body, start=1):
            row_tokens = count_tokens(self.tokenizer, row[0])
            if part and part_tokens + row_tokens > self.options.max_tokens:
                self._table_part(block, start, end, header, part, part_tokens, first_row)
                part, part_tokens, first_row = [], header_tokens, number
            part.append(row)
            part_tokens += row_tokens
        self._table_part(block, start, end, header, part, part_tokens, first_row)

    def _table_part(
        self,
        block: _Block,
        start: int,
        end: int,
        header: tuple[str, str],
        rows: list[tuple[str, str]],
        tokens: int,
        first_row: int,
    ) -> None:
        text = "\n".join([header[0], *(r[0] for r in rows)])
        html = "<table>" + header[1] + "".join(r[1] for r in rows) + "</table>"
        extra = {
            "table_html": html,
            "table_rows": [first_row, first_row + len(rows) - 1],
            "table_header_repeated": True,
        }
        self._emit(start, end, tokens, block.heading_path, text=text, extra=extra)


def _table_rows(html: str) -> list[tuple[str, str]]:
    """(text, HTML) of each row of the first table in ``html``."""
    import lxml.html

    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except Exception:  # malformed HTML: the caller falls back to text windows
        return []
    rows: list[tuple[str, str]] = []
    for tr in root.iter("tr"):
        cells = [" ".join(cell.text_content().split()) for cell in tr if cell.tag in {"td", "th"}]
        text = " | ".join(cells)
        tr.tail = None
        rows.append((text, lxml.html.tostring(tr, encoding="unicode")))
    return rows
