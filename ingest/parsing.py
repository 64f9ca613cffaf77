"""Parse a stored file into elements with unstructured, keeping for each element its
type, page number, heading path and (for tables) the HTML of the table.

Only the ``fast``/``auto``/``ocr_only`` strategies are used: ``hi_res`` needs models from
a hub. Bounds are checked before parsing (pages, expanded size of zip containers) and
after it (extracted text), so a pathological file fails alone with a clear reason.
"""

from __future__ import annotations

import codecs
import logging
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from core.settings import Settings
from ingest import unstructured_env
from ingest.elements import ParsedElement, heading_label
from ingest.errors import DocumentRejected
from ingest.filetypes import DetectedType, tesseract_available
from ingest.pdf_parsing import parse_pdf
from ingest.table_html import table_text

log = logging.getLogger("ragkb.ingest")

_ZIP_CONTAINERS = {"DOCX", "PPTX", "XLSX", "ODT", "EPUB"}
_OLE_MAGIC = bytes.fromhex("d0cf11e0a1b11ae1")


@dataclass(slots=True)
class ParsedDocument:
    elements: list[ParsedElement]
    page_count: int | None
    # Document context that is not content: "running_headers" (text repeated at the top
    # or bottom of the pages, e.g. the company and form) and "page_labels".
    context: dict[str, Any] = field(default_factory=dict)


def parse_file(
    path: Path, detected: DetectedType, filename: str, settings: Settings, *, document_id: str = ""
) -> ParsedDocument:
    """Parse ``path`` (whose original name was ``filename``); raise ``DocumentRejected``.
    ``document_id`` names the document in log lines."""
    check_bounds(path, detected, settings)
    parsed = _parse_pdf_layout(path, detected, filename, settings, document_id)
    if parsed is not None:
        elements, context = parsed
    else:
        with _readable(path, detected) as readable:
            raw = _partition(readable, detected, filename, settings)
        elements, context = to_parsed_elements(raw), {}
    if detected.name == "PDF" and not elements and _may_ocr(path, settings):
        # No text layer (a scanned PDF): read the page images instead.
        elements = to_parsed_elements(_partition(path, detected, filename, settings, "ocr_only"))
    total = sum(len(e.text) for e in elements)
    if total > settings.ingest.max_text_chars:
        raise DocumentRejected(
            f"extracted text is too long ({total:,} characters; the limit is "
            f"{settings.ingest.max_text_chars:,})"
        )
    if not any(e.text.strip() for e in elements):
        hint = (
            " (a scanned PDF: OCR needs Tesseract installed and at most "
            f"{settings.ingest.ocr_max_pages} pages)"
        )
        raise DocumentRejected(
            "no text could be extracted from this file" + (hint if detected.name == "PDF" else "")
        )
    pages = [e.page for e in elements if e.page is not None]
    page_count = _page_count(path, detected) or (max(pages) if pages else None)
    return ParsedDocument(elements=elements, page_count=page_count, context=context)


def _parse_pdf_layout(
    path: Path, detected: DetectedType, filename: str, settings: Settings, document_id: str
) -> tuple[list[ParsedElement], dict[str, Any]] | None:
    """A text PDF read by the layout parser; None when it does not apply (another format,
    another parser configured, OCR asked for) or finds no text (a scan: OCR next)."""
    if (
        detected.name != "PDF"
        or settings.ingest.pdf_parser != "layout"
        or settings.ingest.pdf_strategy == "ocr_only"
    ):
        return None
    try:
        parsed = parse_pdf(
            path,
            page_timeout_s=settings.ingest.pdf_page_timeout_s,
            document=f"{document_id} ({filename})" if document_id else filename,
        )
    except Exception as exc:  # PDFium refuses it, or cannot place its text: unstructured may cope
        log.info("layout parsing of %s failed (%s); using unstructured", filename, exc)
        return None
    if not any(e.text.strip() for e in parsed.elements):
        return None
    elements = parsed.elements
    for element in elements:
        element.text = element.text.replace("\x00", "")  # PostgreSQL text refuses NUL
    context: dict[str, Any] = {"running_headers": parsed.running_headers}
    if parsed.page_labels:
        context["page_labels"] = {str(k): v for k, v in parsed.page_labels.items()}
    return elements, context


@contextmanager
def _readable(path: Path, detected: DetectedType) -> Iterator[Path]:
    """``path``, or for a UTF-16 e-mail a UTF-8 copy of it (deleted afterwards).

    Python's e-mail parser reads bytes as ASCII, so a UTF-16 message comes out as text
    with a NUL between every character: unreadable, and refused by PostgreSQL.
    """
    text = _utf16_text(path) if detected.name == "EML" else None
    if text is None:
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ragkb-parse-") as scratch:
        copy = Path(scratch) / "message.eml"
        copy.write_text(text, encoding="utf-8")
        yield copy


def _utf16_text(path: Path) -> str | None:
    """The file's text if it is UTF-16 (and decodes), else None. charset_normalizer is the
    detector filetypes uses to tell text from binary."""
    import charset_normalizer

    with path.open("rb") as file:
        best = charset_normalizer.from_bytes(file.read(4096)).best()
    if best is None or not best.encoding.startswith("utf_16"):
        return None
    try:
        return path.read_text(encoding=best.encoding)  # "utf_16" reads the byte-order mark
    except UnicodeDecodeError:
        return None


def check_bounds(path: Path, detected: DetectedType, settings: Settings) -> None:
    """Refuse zip bombs, absurd page counts, over-long text and encrypted files before
    parsing them. Sizes are measured by reading (in bounded steps), never taken from what
    the file declares: an archive may lie about its entries' sizes."""
    if detected.name in _ZIP_CONTAINERS:
        try:
            with zipfile.ZipFile(path) as archive:
                entries = archive.infolist()
        except zipfile.BadZipFile as exc:
            if _starts_with(path, _OLE_MAGIC):
                # Office saves password-protected DOCX/XLSX/PPTX as an encrypted OLE file.
                raise DocumentRejected(
                    "the file is password-protected (encrypted Office document); "
                    "upload a copy without a password"
                ) from exc
            raise DocumentRejected("the file is corrupt (not a valid container)") from exc
        _check_expanded_size(path, entries, settings.ingest.max_uncompressed_bytes)
    if detected.is_plain_text:
        _check_text_length(path, settings.ingest.max_text_chars)
    pages = _page_count(path, detected)
    if pages is not None and pages > settings.ingest.max_pages:
        raise DocumentRejected(
            f"too many pages: the document has {pages:,} pages; the limit is "
            f"{settings.ingest.max_pages:,} (RAGKB_INGEST_MAX_PAGES)"
        )


_READ_STEP = 64 * 1024
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, (fields we skip), name and extra lengths


def _check_expanded_size(path: Path, entries: list[zipfile.ZipInfo], limit: int) -> None:
    """Decompress every entry as a parser would (the compressed bytes its header points
    to), counting the bytes that come out in bounded steps: memory stays at a step's size
    whatever the entries declare. Refuses an entry that expands past its declared size
    (parsers decompress by the declared sizes, some all at once) and a total past
    ``limit``."""
    bomb = DocumentRejected(
        f"the file expands to more than {limit:,} bytes, over the limit (possible zip bomb)"
    )
    if sum(info.file_size for info in entries) > limit:
        raise bomb
    total = 0
    with path.open("rb") as raw:
        for info in entries:
            expanded = _expanded_size(raw, info, stop_after=min(info.file_size, limit - total))
            if expanded > info.file_size:
                raise DocumentRejected(
                    "the file is corrupt: an entry expands past the size it declares "
                    "(possible zip bomb)"
                )
            total += expanded
            if total > limit:
                raise bomb


def _expanded_size(raw: BinaryIO, info: zipfile.ZipInfo, stop_after: int) -> int:
    """Bytes entry ``info`` really expands to, or a number past ``stop_after`` as soon as
    it gets there."""
    raw.seek(info.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
        raise DocumentRejected("the file is corrupt (a damaged archive entry)")
    _, name_length, extra_length = _LOCAL_HEADER.unpack(header)
    raw.seek(name_length + extra_length, 1)
    if info.compress_type == zipfile.ZIP_STORED:
        return len(raw.read(min(info.compress_size, stop_after + 1)))
    if info.compress_type != zipfile.ZIP_DEFLATED:
        # Office and EPUB files are deflated; other methods are not read here.
        raise DocumentRejected("the file uses an unsupported compression method")
    decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
    left, produced = info.compress_size, 0
    while not decompressor.eof and produced <= stop_after:
        data = decompressor.unconsumed_tail
        if not data:
            data = raw.read(min(_READ_STEP, left))
            left -= len(data)
            if not data:
                break
        try:
            produced += len(decompressor.decompress(data, _READ_STEP))
        except zlib.error as exc:
            raise DocumentRejected("the file is corrupt (a damaged archive entry)") from exc
    return produced


def _check_text_length(path: Path, limit: int) -> None:
    """Refuse a text file with more than ``limit`` characters, counted while reading (no
    parser holds it first). A byte is at most a character (UTF-8), half of one in UTF-16."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        utf16 = handle.read(2) in (b"\xff\xfe", b"\xfe\xff")
        if size <= limit * (2 if utf16 else 1):
            return
        handle.seek(0)
        decoder = codecs.getincrementaldecoder("utf-16" if utf16 else "utf-8")("replace")
        chars = 0
        while chunk := handle.read(1024 * 1024):
            chars += len(decoder.decode(chunk))
            if chars > limit:
                raise DocumentRejected(
                    f"the text is too long (more than {limit:,} characters; "
                    "RAGKB_INGEST_MAX_TEXT_CHARS)"
                )


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as handle:
        return handle.read(len(magic)) == magic


def _page_count(path: Path, detected: DetectedType) -> int | None:
    if detected.name == "PDF":
        return _pdf_page_count(path)
    if detected.name == "PPTX":
        try:
            with zipfile.ZipFile(path) as archive:
                return sum(
                    1
                    for n in archive.namelist()
                    if n.startswith("ppt/slides/slide") and n.endswith(".xml")
                )
        except zipfile.BadZipFile:
            return None
    return None


def _pdf_page_count(path: Path) -> int:
    """Pages of a PDF, refusing password-protected and unreadable ones (PDFium: fast, and
    it opens large real-world files that pypdf's safety limits reject)."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise DocumentRejected(
                "the PDF is password-protected; upload a copy without a password"
            ) from exc
        raise DocumentRejected("the PDF is corrupt and cannot be read") from exc
    try:
        return len(document)
    finally:
        document.close()


def _may_ocr(path: Path, settings: Settings) -> bool:
    if settings.ingest.pdf_strategy == "ocr_only" or not tesseract_available():
        return False
    return _pdf_page_count(path) <= settings.ingest.ocr_max_pages


def _partition(
    path: Path,
    detected: DetectedType,
    filename: str,
    settings: Settings,
    pdf_strategy: str | None = None,
) -> Sequence[Any]:
    unstructured_env.prepare()
    from unstructured.partition.auto import partition

    kwargs: dict[str, Any] = {
        "filename": str(path),
        "metadata_filename": filename,
        "languages": ["eng"],
    }
    if detected.parse_as_text:
        kwargs["content_type"] = "text/plain"
    else:
        kwargs["content_type"] = detected.media_type
    if detected.name == "PDF":
        kwargs["strategy"] = pdf_strategy or settings.ingest.pdf_strategy
    elif detected.name in {"BMP", "HEIC", "JPG", "PNG", "TIFF", "WEBP"}:
        kwargs["strategy"] = "ocr_only"
    if detected.name in {"EML", "MSG"}:
        kwargs["process_attachments"] = True
    try:
        return list(partition(**kwargs))
    except DocumentRejected:
        raise
    except MemoryError as exc:
        raise DocumentRejected("the file needs more memory to parse than is available") from exc
    except Exception as exc:
        fallback = _fallback(detected, kwargs)
        if fallback is None:
            raise DocumentRejected(_describe_parse_error(exc, detected)) from exc
        log.info("parsing %s as %s failed (%s); trying %s", filename, detected.name, exc, fallback)
    try:
        return list(partition(**kwargs))
    except MemoryError as exc:
        raise DocumentRejected("the file needs more memory to parse than is available") from exc
    except Exception as exc:  # every parser raises its own types; report them plainly
        raise DocumentRejected(_describe_parse_error(exc, detected)) from exc


def _fallback(detected: DetectedType, kwargs: dict[str, Any]) -> str | None:
    """A simpler way to read a file whose parser failed (changes ``kwargs``), if any."""
    if detected.name in {"EML", "MSG"} and kwargs.get("process_attachments"):
        # An attachment of a kind we cannot read (e.g. audio) must not lose the message.
        kwargs["process_attachments"] = False
        return "the message without its attachments"
    if detected.name in {"CSV", "TSV"} and kwargs["content_type"] != "text/plain":
        # Ragged rows or an unusual encoding: the text is still worth indexing.
        kwargs["content_type"] = "text/plain"
        return "plain text"
    return None


def _describe_parse_error(exc: Exception, detected: DetectedType) -> str:
    # The library's own text stays in the server log: it names the stored file's path and
    # the parser's internals, which are not the tenant's to read.
    log.info("parsing a %s file failed: %s: %s", detected.name, type(exc).__name__, exc)
    lowered = str(exc).lower()
    if "encrypt" in lowered or "password" in lowered:
        return f"the {detected.name} file is encrypted or password-protected"
    return (
        f"the {detected.name} file could not be parsed: it is damaged, or not a valid "
        f"{detected.name} file"
    )


def to_parsed_elements(raw: Sequence[Any]) -> list[ParsedElement]:
    """Turn unstructured elements into ours, resolving each one's heading path from the
    chain of parent titles unstructured records (``metadata.parent_id``)."""
    by_id = {getattr(e, "id", None): e for e in raw}
    out: list[ParsedElement] = []
    for element in raw:
        # NUL never carries meaning in text, and PostgreSQL text columns refuse it.
        text = (element.text or "").replace("\x00", "").strip()
        category = str(getattr(element, "category", type(element).__name__))
        if not text or category in {"PageBreak", "Image"}:
            continue
        metadata = element.metadata
        table_html = getattr(metadata, "text_as_html", None) if category == "Table" else None
        if table_html:
            # One row per line, not one run of cells.
            text = (table_text(table_html) or text).replace("\x00", "")
        path = _parent_titles(element, by_id)
        if category == "Title":
            path.append(heading_label(text))
        out.append(
            ParsedElement(
                type=category,
                text=text,
                page=getattr(metadata, "page_number", None),
                heading_path=path,
                table_html=table_html,
            )
        )
    return out


def _parent_titles(element: Any, by_id: dict[Any, Any]) -> list[str]:
    titles: list[str] = []
    seen: set[Any] = set()
    parent_id = element.metadata.parent_id
    while parent_id is not None and parent_id not in seen:
        seen.add(parent_id)
        parent = by_id.get(parent_id)
        if parent is None:
            break
        if getattr(parent, "category", "") == "Title" and (parent.text or "").strip():
            titles.append(heading_label(parent.text.strip()))
        parent_id = parent.metadata.parent_id
    titles.reverse()
    return titles
