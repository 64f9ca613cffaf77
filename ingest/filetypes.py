"""What kind of file this is, judged from its bytes (libmagic and the container's
contents), never from its name alone; and whether this installation can parse it.

The filename's extension only settles what the content cannot: plain text that is
Markdown, CSV, reStructuredText or Org.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from core.errors import UnsupportedMediaType

# Formats unstructured parses here with no extra tools, by its FileType name.
_ALWAYS = {
    "CSV", "DOCX", "EML", "EPUB", "HTML", "JSON", "MD", "MSG", "NDJSON", "ODT", "ORG",
    "PDF", "PPTX", "RST", "RTF", "TSV", "TXT", "XLS", "XLSX", "XML",
}  # fmt: skip
# Legacy Office formats are converted with LibreOffice: only when it is installed.
_NEEDS_LIBREOFFICE = {"DOC", "PPT"}
# Images are parsed by OCR: only when Tesseract is installed.
_NEEDS_TESSERACT = {"BMP", "HEIC", "JPG", "PNG", "TIFF", "WEBP"}
# JSON files are indexed as text: unstructured's JSON partitioner only reads its own output.
_AS_TEXT = {"JSON", "NDJSON"}
_TEXT_TYPES = {"CSV", "HTML", "JSON", "MD", "NDJSON", "ORG", "RST", "TSV", "TXT", "XML"}
_TEXTUAL_MIME_TYPES = {"application/json", "application/xml", "application/x-ndjson"}
_SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DetectedType:
    name: str  # unstructured's FileType name, e.g. "PDF"
    media_type: str  # e.g. "application/pdf"

    @property
    def parse_as_text(self) -> bool:
        return self.name in _AS_TEXT

    @property
    def is_plain_text(self) -> bool:
        """Text whose characters are all kept as extracted text (no markup to strip)."""
        return self.name in _TEXT_TYPES - {"HTML", "XML"}


def libreoffice_available() -> bool:
    return shutil.which("soffice") is not None or shutil.which("libreoffice") is not None


def tesseract_available() -> bool:
    return shutil.which("tesseract") is not None


def detect(path: Path, filename: str) -> DetectedType:
    """Detect ``path``'s type; raise 415 (with the reason) when it cannot be parsed here."""
    from ingest import unstructured_env

    unstructured_env.prepare()
    from unstructured.file_utils.filetype import detect_filetype

    with path.open("rb") as handle:
        try:
            file_type = detect_filetype(file=handle, metadata_file_path=filename)
        except Exception as exc:  # unstructured raises plain errors on odd input
            raise UnsupportedMediaType(
                f"{filename}: could not determine the file type ({exc})"
            ) from exc
    detected = DetectedType(file_type.name, file_type.mime_type)
    if detected.name in _TEXT_TYPES:
        # unstructured falls back on the extension for unknown bytes: "notes.txt" that is
        # really a binary must be refused, not parsed as garbage text.
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
        if not _looks_like_text(head):
            raise UnsupportedMediaType(
                f"{filename}: unsupported file type: the content is binary data, not text"
            )
    check_supported(detected, filename)
    return detected


def _looks_like_text(head: bytes) -> bool:
    import charset_normalizer
    import magic

    sniffed = str(magic.from_buffer(head, mime=True))
    if sniffed.startswith("text/") or sniffed in _TEXTUAL_MIME_TYPES:
        return True
    # libmagic does not recognise e.g. UTF-16 without a byte-order mark: try decoding.
    return (
        sniffed == "application/octet-stream"
        and charset_normalizer.from_bytes(head).best() is not None
    )


def check_supported(detected: DetectedType, filename: str) -> None:
    name = detected.name
    if name in _ALWAYS:
        return
    if name in _NEEDS_LIBREOFFICE:
        if libreoffice_available():
            return
        raise UnsupportedMediaType(
            f"{filename}: {name} files need LibreOffice, which is not installed here; "
            f"save it as {'DOCX' if name == 'DOC' else 'PPTX'} and upload that",
            code="converter_missing",
        )
    if name in _NEEDS_TESSERACT:
        if tesseract_available():
            return
        raise UnsupportedMediaType(
            f"{filename}: images need OCR (Tesseract), which is not installed here",
            code="converter_missing",
        )
    described = "unknown binary data" if name == "UNK" else f"{name} ({detected.media_type})"
    raise UnsupportedMediaType(f"{filename}: unsupported file type: {described}")
