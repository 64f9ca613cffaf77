"""Metadata extracted from real SEC 10-Q filings: the company, the form, the period and
the day it ended, from the cover page, the running headers and the file name.

These are the reliability figures the README gives: on the 20 filings every fact is
right; from the content alone (file name ignored) the quarter label agrees with the
file's for 18 of 20 (Microsoft labels its files by another calendar than its cover's
period end)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from core.db import Database
from core.settings import Settings
from core.tenancy import TenantScope
from core.tenants import create_tenant
from ingest.elements import ParsedElement
from ingest.filetypes import detect
from ingest.metadata import extract_metadata, file_title, refresh_metadata
from ingest.parsing import parse_file
from tests.support.helpers import SHARED_DATA, make_settings
from tests.support.indexed_docs import add_document

SEC_DOCS = SHARED_DATA / "sec-10-q" / "docs"
needs_sec = pytest.mark.skipif(
    not SEC_DOCS.is_dir(), reason=f"the SEC 10-Q filings are not at {SEC_DOCS} (../shared)"
)
NAMES = {
    "AAPL": "Apple Inc.",
    "AMZN": "Amazon.com, Inc.",
    "INTC": "Intel Corporation",
    "MSFT": "Microsoft Corporation",
    "NVDA": "Nvidia Corporation",
}
PERIOD_ENDS = {
    "2023 Q1 AAPL": date(2022, 12, 31),
    "2023 Q2 NVDA": date(2023, 7, 30),
    "2023 Q1 INTC": date(2023, 4, 1),
    "2023 Q3 MSFT": date(2023, 9, 30),
    "2022 Q3 AMZN": date(2022, 9, 30),
}
# The first pages hold the cover and enough pages for the running headers to repeat.
_PAGES = 6


def _first_pages(source: Path, target: Path) -> Path:
    pdf = pdfium.PdfDocument(str(source))
    out = pdfium.PdfDocument.new()
    try:
        out.import_pages(pdf, list(range(min(_PAGES, len(pdf)))))
        out.save(str(target))
    finally:
        out.close()
        pdf.close()
    return target


@needs_sec
def test_every_filing_knows_its_company_form_and_period(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    wrong: list[str] = []
    content_only_agrees = 0
    files = sorted(SEC_DOCS.glob("*.pdf"))
    assert len(files) == 20
    for path in files:
        year, quarter, ticker = path.stem.split()
        cover = _first_pages(path, tmp_path / path.name)
        detected = detect(cover, path.name)
        parsed = parse_file(cover, detected, path.name, settings)
        facts = extract_metadata(
            parsed.elements, parsed.context, path.name, detected.name, file_title(path, "PDF")
        )
        expected = {
            "organisations": [NAMES[ticker]],
            "tickers": [ticker],
            "document_type": "Form 10-Q",
            "period": f"{year}-{quarter}",
        }
        got = {k: getattr(facts, k) for k in expected}
        if got != expected:
            wrong.append(f"{path.name}: {got} != {expected}")
        if path.stem in PERIOD_ENDS and facts.period_end != PERIOD_ENDS[path.stem]:
            wrong.append(f"{path.name}: period ended {facts.period_end}")
        assert facts.title is not None and NAMES[ticker] in facts.title
        content = extract_metadata(parsed.elements, parsed.context, "", detected.name)
        content_only_agrees += content.period == facts.period
    assert not wrong, "\n".join(wrong)
    assert content_only_agrees >= 18


def _elements(*lines: str) -> list[ParsedElement]:
    return [ParsedElement("NarrativeText", line, 1, []) for line in lines]


def test_a_memo_gets_its_type_date_and_first_heading_as_title() -> None:
    elements = [
        ParsedElement("Title", "Travel policy update", 1, []),
        *_elements("MEMORANDUM", "To: All staff", "From: Finance", "Date: March 15, 2024"),
    ]
    facts = extract_metadata(elements, {}, "memo.docx", "DOCX")
    assert facts.document_type == "memo"
    assert facts.period == "2024-03-15"
    assert facts.title == "Travel policy update"
    assert facts.organisations == []


def test_a_company_named_only_in_the_running_header_is_found() -> None:
    elements = _elements("Quarterly letter to shareholders", "Revenue grew 12%.")
    context = {"running_headers": ["Contoso Ltd. | Q2 2024 Shareholder letter"]}
    facts = extract_metadata(elements, context, "letter.pdf", "PDF")
    assert facts.organisations == ["Contoso Ltd."]
    assert facts.period == "2024-Q2"


def test_a_file_without_facts_is_titled_by_its_first_heading_or_name() -> None:
    assert extract_metadata(_elements("just some text"), {}, "notes.txt", "TXT").title == "notes"


def test_documents_ingested_before_extraction_get_metadata_from_their_chunks(
    settings: Settings,
) -> None:
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            tenant = create_tenant(session, "acme")
            scope = TenantScope(tenant.id, tenant.slug)
            doc, _ = add_document(
                session, scope,
                ["FORM 10-Q\nFor the quarterly period ended April 1, 2023\n"
                 "Commission File Number: 000-06217\nINTEL CORPORATION\n"
                 "(Exact name of registrant as specified in its charter)",
                 "Revenue was down 36%."],
                filename="intel-q1.pdf",
            )  # fmt: skip
            doc.context = {"running_headers": ["Table of Contents"]}
            assert refresh_metadata(session, scope) == 1
            assert doc.organisations == ["Intel Corporation"]
            assert doc.document_type == "Form 10-Q"
            assert (doc.period, doc.period_end) == ("2023-Q1", date(2023, 4, 1))
            assert refresh_metadata(session, scope) == 0  # only documents without any
    finally:
        db.dispose()
