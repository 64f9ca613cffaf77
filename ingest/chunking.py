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

from core.settings import Settings
from ingest.elements import ParsedElement
from ingest.table_html import table_rows
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
    # A table up to this size stays one chunk (a statement cited whole, its first rows and
    # header within the embedding window); a longer one is split by rows.
    table_max_tokens: int = 800

    def __post_init__(self) -> None:
        if self.overlap_tokens >= self.max_tokens // 2:
            raise ValueError("chunk overlap must be under half the chunk size")

    @classmethod
    def from_settings(cls, settings: Settings) -> ChunkingOptions:
        return cls(
            max_tokens=settings.ingest.chunk_max_tokens,
            overlap_tokens=settings.ingest.chunk_overlap_tokens,
            min_tokens=settings.ingest.chunk_min_tokens,
            table_max_tokens=settings.ingest.chunk_table_max_tokens,
        )


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

    def draft(
        self,
        ordinal: int,
        start: int,
        end: int,
        tokens: int,
        heading_path: list[str],
        text: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> ChunkDraft:
        """The chunk over ``[start, end)``: its text (the slice, unless given), element
        types, pages and printed page numbers."""
        types, page_start, page_end = self.describe(start, end)
        extra = {k: v for k, v in (extra or {}).items() if k != "printed_pages"}
        printed = self.printed_pages(start, end)
        if printed:
            extra["printed_pages"] = printed
        return ChunkDraft(
            ordinal=ordinal,
            text=self.text[start:end] if text is None else text,
            char_start=start,
            char_end=end,
            token_count=tokens,
            heading_path=list(heading_path),
            element_types=types,
            page_start=page_start,
            page_end=page_end,
            extra=extra,
        )

    def printed_pages(self, start: int, end: int) -> str | None:
        """ "43" or "43-44": the printed numbers of the pages covered, when any differs
        from the physical page; None otherwise."""
        covered = [self.elements[i] for i in self.covering(start, end)]
        labelled = [e for e in covered if e.page_label and e.page is not None]
        if not labelled or all(e.page_label == str(e.page) for e in labelled):
            return None
        first, last = labelled[0].page_label, labelled[-1].page_label
        return first if first == last else f"{first}-{last}"


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
            table_tokens = count_tokens(tokenizer, elements[block.first].text)
            if pending and pending_tokens + table_tokens <= options.max_tokens:
                # A small table stays with the paragraph (or title) that introduces it.
                chunker.flush(pending, table=block)
            elif pending and pending_tokens < options.min_tokens:
                # A short introduction ("… is as follows (in millions):", the statement's
                # title) opens the table's chunk instead of being a chunk of its own.
                chunker.table(block, intro=pending)
            else:
                chunker.flush(pending)
                chunker.table(block)
            pending, pending_tokens = [], 0
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
    return _merge_small(chunker.chunks, layout, tokenizer, options)


def _merge_small(
    chunks: list[ChunkDraft], layout: _Layout, tokenizer: Any, options: ChunkingOptions
) -> list[ChunkDraft]:
    """Join a text chunk too small to answer anything (a heading run on a cover page, a
    one-line section) to the next text chunk, or else the previous one, when the two are
    adjacent and fit; the joined chunk keeps the heading path the two have in common."""
    small = options.min_tokens // 2
    out: list[ChunkDraft] = []
    i = 0
    while i < len(chunks):
        chunk = chunks[i]
        following = chunks[i + 1] if i + 1 < len(chunks) else None
        if chunk.token_count < small and _joinable(chunk, following, options):
            assert following is not None
            chunks[i + 1] = _joined(chunk, following, layout, tokenizer)
            i += 1
            continue
        if out and chunk.token_count < small and _joinable(out[-1], chunk, options):
            out[-1] = _joined(out[-1], chunk, layout, tokenizer)
        else:
            out.append(chunk)
        i += 1
    for ordinal, chunk in enumerate(out):
        chunk.ordinal = ordinal
    return out


def _joinable(first: ChunkDraft, second: ChunkDraft | None, options: ChunkingOptions) -> bool:
    if second is None or first.extra.get("table_html") or second.extra.get("table_html"):
        return False
    # Two sections under different top headings keep their own chunks (and headings);
    # a section without a heading (a cover page's lines) may join either neighbour.
    paths = first.heading_path, second.heading_path
    related = not paths[0] or not paths[1] or paths[0][0] == paths[1][0]
    return (
        related
        and first.char_end <= second.char_start
        and first.token_count + second.token_count + 2 <= options.max_tokens
    )


def _joined(first: ChunkDraft, second: ChunkDraft, layout: _Layout, tokenizer: Any) -> ChunkDraft:
    start, end = first.char_start, second.char_end
    common = []
    for a, b in zip(first.heading_path, second.heading_path, strict=False):
        if a != b:
            break
        common.append(a)
    tokens = count_tokens(tokenizer, layout.text[start:end])
    return layout.draft(first.ordinal, start, end, tokens, common, extra=second.extra)


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
        self.chunks.append(
            self.layout.draft(len(self.chunks), start, end, tokens, heading_path, text, extra)
        )

    def flush(self, run: list[_Block], table: _Block | None = None) -> None:
        """Chunk consecutive text blocks: one chunk when they fit, else overlapping windows.
        With ``table``, the run fits with the table that follows it: one chunk for both."""
        if not run:
            return
        start = self.layout.starts[run[0].first]
        if table is not None:
            end = self.layout.ends[table.first]
            text = self.layout.text[start:end]
            html = self.layout.elements[table.first].table_html
            extra = {"table_html": html} if html else {}
            tokens = count_tokens(self.tokenizer, text)
            self._emit(start, end, tokens, run[0].heading_path, extra=extra)
            return
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
            end = offsets[i - 1][1]
            ends_sentence = _SENTENCE_END.search(text[offsets[i - 1][0] : end])
            if ends_sentence and (end >= len(text) or text[end].isspace()):  # not "66,822.75"
                return i
        for i in range(last, floor, -1):
            if self._starts_word(text, offsets, i):
                return i
        return last

    @staticmethod
    def _starts_word(text: str, offsets: list[tuple[int, int]], i: int) -> bool:
        """Whether token ``i`` starts a word: after white space, so that a cut never falls
        inside a word or a number ("117,154" is three tokens). Text without spaces (Chinese,
        Japanese) may be cut between any two characters."""
        if i <= 0 or i >= len(offsets):
            return True
        begin = offsets[i][0]
        if begin == 0 or text[begin - 1].isspace():
            return True
        return _is_cjk(text[begin - 1]) or _is_cjk(text[begin])

    def table(self, block: _Block, intro: list[_Block] | None = None) -> None:
        """A table as one chunk when it fits ``table_max_tokens``, else split by rows with
        the header repeated; each chunk starts with the table's caption (its title lines,
        or the short text ``intro`` that leads to it), so a part still says which
        statement it is."""
        element = self.layout.elements[block.first]
        start, end = self.layout.starts[block.first], self.layout.ends[block.first]
        caption = element.caption
        if intro:
            start = self._intro_start(intro, element.page)
            lead = " ".join(self.layout.text[start : self.layout.ends[intro[-1].last]].split())
            if lead and (not caption or _plain(caption) in _plain(lead)):
                caption = lead
            elif lead and _plain(lead) not in _plain(caption or ""):
                caption = f"{lead} · {caption}"
        whole = f"{caption}\n{element.text}" if caption else element.text
        tokens = count_tokens(self.tokenizer, whole)
        html = element.table_html
        if tokens <= self.options.table_max_tokens:
            extra = {"table_html": html} if html else {}
            if caption:
                extra["table_caption"] = caption
            self._emit(start, end, tokens, block.heading_path, text=whole, extra=extra)
            return
        rows = table_rows(html) if html else []
        if len(rows) < 2:
            self._windows(start, end, block.heading_path)
            return
        header, body = rows[0], rows[1:]
        if caption:
            header = (f"{caption}\n{header[0]}", header[1])
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

    def _intro_start(self, intro: list[_Block], page: int | None) -> int:
        """Where a table's introduction starts: its text on the table's own page (what
        comes before, e.g. the previous statement's footnote, is a chunk of its own)."""
        first = intro[0].first
        while first < intro[-1].last and self.layout.elements[first].page != page:
            first += 1
        if first > intro[0].first:
            self._windows(
                self.layout.starts[intro[0].first],
                self.layout.ends[first - 1],
                intro[0].heading_path,
            )
        return self.layout.starts[first]

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


def _plain(text: str) -> str:
    return " ".join(text.replace(" · ", " ").split())


def _is_cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uff00" <= ch <= "\uffef"
