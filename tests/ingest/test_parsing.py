"""Parsing with the real unstructured, offline: the spaCy model comes from its package,
types are detected from content, page numbers and headings survive, and pathological
files are refused before they are parsed."""

from __future__ import annotations

import io
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import pytest

from core.errors import UnsupportedMediaType
from ingest import unstructured_env
from ingest.errors import DocumentRejected
from ingest.filetypes import DetectedType, detect, libreoffice_available
from ingest.parsing import parse_file
from tests.support.helpers import SHARED_DATA, make_settings

DOCS = SHARED_DATA / "docs"
needs_docs = pytest.mark.skipif(
    not DOCS.is_dir(), reason=f"shared test documents not found at {DOCS}"
)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network access attempted: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_spacy_model_comes_from_the_package_never_a_download(offline: None) -> None:
    unstructured_env.prepare()
    from unstructured.nlp import tokenize

    nlp = tokenize._get_nlp()
    assert "senter" in nlp.pipe_names and "parser" not in nlp.pipe_names
    assert nlp.meta["name"].startswith("core_web_sm") and nlp.meta["lang"] == "en"
    assert tokenize.sent_tokenize("One sentence here. And another one.") == [
        "One sentence here.",
        "And another one.",
    ]
    with pytest.raises(unstructured_env.SpacyModelMissing):
        tokenize._install_spacy_model()


def test_markdown_keeps_heading_paths(tmp_path: Path, offline: None) -> None:
    path = tmp_path / "doc"
    path.write_text("# Guide\n\nIntro text here.\n\n## Setup\n\nInstall it carefully.\n")
    detected = detect(path, "guide.md")
    assert detected == DetectedType("MD", "text/markdown")
    parsed = parse_file(path, detected, "guide.md", make_settings(tmp_path))
    setup = [e for e in parsed.elements if e.text.startswith("Install")]
    assert setup and setup[0].heading_path == ["Guide", "Setup"]


def test_type_comes_from_content_not_the_extension(tmp_path: Path) -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=100, height=100)
    buffer = io.BytesIO()
    writer.write(buffer)
    disguised = tmp_path / "x"
    disguised.write_bytes(buffer.getvalue())
    assert detect(disguised, "notes.txt").name == "PDF"
    binary = tmp_path / "y"
    binary.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 4)
    with pytest.raises(UnsupportedMediaType, match="binary data"):
        detect(binary, "readme.md")


def test_zip_bomb_and_page_limits_are_refused_before_parsing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ingest={"max_uncompressed_bytes": 1_000_000, "max_pages": 2})
    bomb = tmp_path / "bomb"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"\0" * 5_000_000)
    with pytest.raises(DocumentRejected, match="zip bomb"):
        parse_file(bomb, DetectedType("DOCX", "application/x"), "bomb.docx", settings)

    from pypdf import PdfWriter

    writer = PdfWriter()
    for _ in range(3):
        writer.add_blank_page(width=100, height=100)
    pdf = tmp_path / "pages"
    with pdf.open("wb") as out:
        writer.write(out)
    with pytest.raises(DocumentRejected, match="3 pages; the limit is 2"):
        parse_file(pdf, DetectedType("PDF", "application/pdf"), "long.pdf", settings)


def test_corrupt_and_textless_files_fail_with_a_reason(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    corrupt = tmp_path / "corrupt"
    corrupt.write_bytes(b"%PDF-1.4\n" + b"garbage" * 100)
    with pytest.raises(DocumentRejected, match="PDF"):
        parse_file(corrupt, DetectedType("PDF", "application/pdf"), "c.pdf", settings)
    blank = tmp_path / "blank"
    blank.write_text("   \n\n  ")
    with pytest.raises(DocumentRejected, match="no text"):
        parse_file(blank, DetectedType("TXT", "text/plain"), "b.txt", settings)


@needs_docs
def test_pdf_pages_and_docx_headings(tmp_path: Path, offline: None) -> None:
    settings = make_settings(tmp_path)
    pdf = DOCS / "pdf" / "layout-parser-paper-fast.pdf"
    parsed = parse_file(pdf, detect(pdf, pdf.name), pdf.name, settings)
    assert parsed.page_count == 2
    assert {e.page for e in parsed.elements} == {1, 2}
    docx = DOCS / "category-level.docx"
    parsed = parse_file(docx, detect(docx, docx.name), docx.name, settings)
    paths = {tuple(e.heading_path) for e in parsed.elements}
    assert ("A Heading 1", "A Heading 2") in paths
    pptx = DOCS / "fake-power-point-many-pages.pptx"
    parsed = parse_file(pptx, detect(pptx, pptx.name), pptx.name, settings)
    assert parsed.page_count is not None and parsed.page_count > 1
    assert max(e.page or 0 for e in parsed.elements) == parsed.page_count


@needs_docs
@pytest.mark.parametrize(
    "name", ["fake-email-utf-16.eml", "fake-email-utf-16-be.eml", "fake-email-utf-16-le.eml"]
)
def test_utf16_email_is_read_as_text_without_nul_characters(
    tmp_path: Path, offline: None, name: str
) -> None:
    # Read as ASCII these came out with a NUL between characters, which PostgreSQL refused.
    message = DOCS / "eml" / name
    parsed = parse_file(message, detect(message, name), name, make_settings(tmp_path))
    text = " ".join(e.text for e in parsed.elements)
    assert "\x00" not in text
    assert "This is a test email to use for unit tests" in text


@needs_docs
def test_encrypted_files_fail_with_a_clear_reason(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    for name, expected in [
        ("pdf/password.pdf", "password"),
        ("password_protected.xlsx", "password"),
    ]:
        path = DOCS / name
        with pytest.raises(DocumentRejected, match=expected):
            parse_file(path, detect(path, path.name), path.name, settings)


@needs_docs
@pytest.mark.skipif(libreoffice_available(), reason="LibreOffice is installed here")
def test_legacy_office_files_need_libreoffice() -> None:
    with pytest.raises(UnsupportedMediaType, match="LibreOffice") as caught:
        detect(DOCS / "fake.doc", "fake.doc")
    assert caught.value.code == "converter_missing"
