"""Every file of ``../shared/data/docs`` either parses into chunks with page numbers and
headings, or fails (or is refused) with a clear reason — as recorded per file in
``tests/support/fixtures/shared_docs_outcomes.tsv`` (regenerate:
``python -m tests.support.ingest_corpus``).

Large files and those that need OCR run only with ``RAGKB_SLOW_TESTS=1`` (minutes).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from ingest.filetypes import tesseract_available
from tests.support.helpers import make_settings
from tests.support.ingest_corpus import DOCS, FIXTURE, outcome_of

SLOW = os.environ.get("RAGKB_SLOW_TESTS") == "1"
_SMALL_BYTES = 200_000
_OCR_TYPES = {"BMP", "HEIC", "JPG", "PNG", "TIFF", "WEBP"}
# Paged formats: every chunk of these must carry its page (or slide, or sheet) number.
_PAGED_TYPES = {"PDF", "PPTX", "XLSX", "XLS", *_OCR_TYPES}


def _rows() -> list[dict[str, str]]:
    with FIXTURE.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def _needs_ocr(row: dict[str, str]) -> bool:
    scanned_pdf = row["type"] == "PDF" and row["path"] in _SCANNED_PDFS
    return row["type"] in _OCR_TYPES or scanned_pdf


_SCANNED_PDFS = {
    "pdf/failure-after-repair.pdf",
    "pdf/loremipsum-flat.pdf",
    "pdf/single_table.pdf",
    "pdf/table-multi-row-column-cells.pdf",
}


def _params() -> list[object]:
    params: list[object] = []
    for row in _rows():
        path = DOCS / row["path"]
        marks = []
        big = path.exists() and path.stat().st_size > _SMALL_BYTES
        if not SLOW and (big or _needs_ocr(row)):
            marks.append(pytest.mark.skip(reason="large or OCR file: set RAGKB_SLOW_TESTS=1"))
        elif _needs_ocr(row) and not tesseract_available():
            marks.append(pytest.mark.skip(reason="Tesseract is not installed"))
        params.append(pytest.param(row, id=row["path"], marks=marks))
    return params


def test_fixture_covers_every_file() -> None:
    if not DOCS.is_dir():
        pytest.skip(f"shared test documents not found at {DOCS}")
    from tests.support.ingest_corpus import corpus_files

    listed = {row["path"] for row in _rows()}
    assert listed == {str(p.relative_to(DOCS)) for p in corpus_files()}


@pytest.mark.skipif(not DOCS.is_dir(), reason=f"shared test documents not found at {DOCS}")
@pytest.mark.parametrize("row", _params())
def test_file_outcome_matches_the_table(row: dict[str, str], tmp_path: Path) -> None:
    result = outcome_of(DOCS / row["path"], make_settings(tmp_path))
    assert (result.outcome, result.type) == (row["outcome"], row["type"]), result.reason
    if result.outcome != "ok":
        assert result.reason, "a failure needs a reason"
        assert result.reason[:40] == row["reason"][:40]
        return
    assert result.chunks == int(row["chunks"]) > 0
    assert str(result.pages or "") == row["pages"]
    assert result.paged_chunks == int(row["paged_chunks"])
    assert result.headed_chunks == int(row["headed_chunks"])
    if result.type in _PAGED_TYPES:
        assert result.paged_chunks == result.chunks, "every chunk carries its page"
