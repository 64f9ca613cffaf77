"""Bounds measured while reading, before any parser holds the file (#20): an archive that
lies about its entries' sizes is refused with memory bounded by a read step, and an
over-long text file is refused without being parsed."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from ingest.errors import DocumentRejected
from ingest.filetypes import DetectedType
from ingest.parsing import parse_file
from tests.support.helpers import make_settings

DOCX = DetectedType(
    "DOCX", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
)
_CONTENT_TYPES = (
    '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    'content-types"><Override PartName="/word/document.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)


def lying_docx(expanded_bytes: int, declared_bytes: int = 100) -> bytes:
    """A DOCX-shaped archive whose document part expands to ``expanded_bytes`` of zeros
    while its headers (local and central) declare ``declared_bytes``."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", _CONTENT_TYPES)
        with archive.open("word/document.xml", "w") as part:
            block = b"\0" * (1 << 20)
            for _ in range(expanded_bytes // len(block)):
                part.write(block)
    data = bytearray(out.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo("word/document.xml")
    # Uncompressed size: offset 22 of the local header, 24 of the central directory entry.
    struct.pack_into("<I", data, info.header_offset + 22, declared_bytes)
    central = data.rfind(b"PK\x01\x02", 0, data.rfind(b"PK\x05\x06"))
    assert data[central + 46 : central + 46 + 17] == b"word/document.xml"
    struct.pack_into("<I", data, central + 24, declared_bytes)
    return bytes(data)


def test_an_archive_that_lies_about_its_sizes_is_refused_in_bounded_memory(
    tmp_path: Path,
) -> None:
    # 1 MiB allowed; the part declares 100 bytes and expands to 64 MiB. Before the fix the
    # declared sizes passed the check and the parser inflated the whole part at once.
    settings = make_settings(tmp_path, ingest={"max_uncompressed_bytes": 1 << 20})
    path = tmp_path / "lying.docx"
    path.write_bytes(lying_docx(64 << 20))
    with zipfile.ZipFile(path) as archive:
        assert sum(i.file_size for i in archive.infolist()) < 1 << 20  # the lie
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(DocumentRejected, match="zip bomb"):
            parse_file(path, DOCX, "lying.docx", settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak:,} bytes while checking"
    assert time.monotonic() - started < 5


def test_an_honest_archive_over_the_limit_is_refused_and_one_under_it_parses(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, ingest={"max_uncompressed_bytes": 1 << 20})
    big = tmp_path / "big.docx"
    big.write_bytes(lying_docx(2 << 20, declared_bytes=2 << 20))
    with pytest.raises(DocumentRejected, match="zip bomb"):
        parse_file(big, DOCX, "big.docx", settings)


def test_an_over_long_text_file_is_refused_before_parsing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, ingest={"max_text_chars": 100_000})
    path = tmp_path / "long.txt"
    path.write_text("word " * 40_000)  # 200,000 characters
    started = time.monotonic()
    with pytest.raises(DocumentRejected, match="text is too long"):
        parse_file(path, DetectedType("TXT", "text/plain"), "long.txt", settings)
    assert time.monotonic() - started < 1.0  # counted while reading; never partitioned
    # Multi-byte characters count as characters: 60,000 of them in 180,000 bytes pass.
    short = tmp_path / "short.txt"
    short.write_text("€ü " * 20_000, encoding="utf-8")
    elements = parse_file(short, DetectedType("TXT", "text/plain"), "short.txt", settings)
    assert elements.elements
