"""Hostile files through the real upload API: each one is refused at upload with a clear
error, or ends ``ready`` or ``failed`` with a reason, within its time limit; the ingestion
queue keeps working afterwards (a normal document still becomes ready), and nothing is
written outside the tenant's folder of the data directory.

The files are generated here (small on disk): a truncated PDF, a PDF of 10,000 blank
pages, deeply nested HTML, a zip bomb named .docx, a DOCX whose archive lies about its
sizes, a fake PNG, an empty file, binary junk named .txt, and names with path traversal
and control characters. No answer and no document error shows a filesystem path.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from fastapi.testclient import TestClient

from core.errors import without_paths
from core.settings import Settings
from tests.ingest.test_bounds_before_parsing import lying_docx
from tests.support.helpers import SHARED_DATA, TenantCredentials, assert_error, make_services

SENTENCE = "The quarterly safety review covered the northern warehouse and its loading docks. "
SAMPLE_PDF = SHARED_DATA / "docs" / "pdf" / "layout-parser-paper-fast.pdf"
# Seconds each generated file may take to reach ready or failed (2 shared CI cores).
TIME_LIMIT_S = 60.0


def _blank_pages_pdf(pages: int) -> bytes:
    pdf = pikepdf.new()
    for _ in range(pages):
        pdf.add_blank_page(page_size=(612, 792))
    out = io.BytesIO()
    pdf.save(out, compress_streams=True, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return out.getvalue()


def _text_pdf() -> bytes:
    if SAMPLE_PDF.exists():
        return SAMPLE_PDF.read_bytes()
    pytest.skip(f"sample PDF not found at {SAMPLE_PDF}")


def _zip_bomb(expanded_bytes: int) -> bytes:
    """A DOCX-shaped archive whose document part expands to ``expanded_bytes`` of zeros."""
    out = io.BytesIO()
    block = b"\0" * (1 << 20)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>',
        )
        with archive.open("word/document.xml", "w", force_zip64=True) as part:
            for _ in range(expanded_bytes // len(block) + 1):
                part.write(block)
    return out.getvalue()


def _nested_html(depth: int) -> bytes:
    return (
        b"<html><body>" + b"<div>" * depth + SENTENCE.encode() + b"</div>" * depth
        + b"</body></html>"
    )  # fmt: skip


def _tree(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def _stray(added: set[Path], *allowed: Path) -> list[Path]:
    """New paths outside the ``allowed`` folders (besides the SQLite database files)."""
    return [
        p
        for p in added
        if not p.name.startswith("ragkb.db")
        and not any(p == folder or folder in p.parents for folder in allowed)
    ]


def _upload(client: TestClient, creds: TenantCredentials, name: str, data: bytes) -> Any:
    files = [("files", (name, io.BytesIO(data), "application/octet-stream"))]
    return client.post("/v1/documents", headers=creds.headers, files=files)


def _settle(client: TestClient, creds: TenantCredentials, doc_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIME_LIMIT_S
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(f"/v1/documents/{doc_id}", headers=creds.headers).json()
        if body["status"] in ("ready", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"{doc_id} still {body['status']} after {TIME_LIMIT_S} s")


def test_hostile_files_end_ready_or_failed_with_a_reason_and_the_queue_survives(
    client: TestClient, settings: Settings, tenant_a: TenantCredentials
) -> None:
    before = _tree(settings.storage.data_dir)
    pdf = _text_pdf()
    # name -> (bytes, the outcome: "ready", "failed: <words of the reason>" or "<status>:<code>")
    cases: dict[str, tuple[bytes, str]] = {
        "truncated.pdf": (pdf[: len(pdf) // 2], "failed"),
        "blank-10000.pdf": (_blank_pages_pdf(10_000), "failed: too many pages"),
        "nested.html": (_nested_html(100_000), "any"),
        "bomb.docx": (_zip_bomb(settings.ingest.max_uncompressed_bytes), "failed: zip bomb"),
        "lying.docx": (lying_docx(16 << 20), "failed: zip bomb"),
        "fake.png": (b"\x89PNG\r\n\x1a\n" + os.urandom(4096), "any"),
        "empty.txt": (b"", "422:empty_file"),
        "junk.txt": (os.urandom(64 * 1024), "415:unsupported_media_type"),
    }
    outcomes: dict[str, str] = {}
    shown: list[str] = []  # every answer body and document error, checked for paths below
    for name, (data, expected) in cases.items():
        started = time.monotonic()
        response = _upload(client, tenant_a, name, data)
        shown.append(response.text)
        if expected[0].isdigit():
            status, code = expected.split(":")
            error = assert_error(response, int(status), code)
            assert name in error["message"], error
            outcomes[name] = f"refused {status}"
            continue
        assert response.status_code == 202, (name, response.text)
        doc = _settle(client, tenant_a, response.json()["documents"][0]["id"])
        took = time.monotonic() - started
        outcomes[name] = f"{doc['status']} in {took:.1f} s: {doc['error']}"
        shown.append(doc["error"] or "")
        if doc["status"] == "failed":
            assert doc["error"], f"{name}: failed without a reason"
            assert doc["chunk_count"] == 0
        if expected.startswith("failed"):
            assert doc["status"] == "failed", (name, doc)
            words = expected.partition(": ")[2]
            assert words in doc["error"], (name, doc["error"])
    print(outcomes)  # shown with -s: what each hostile file did
    listing = client.get("/v1/documents?limit=100", headers=tenant_a.headers)
    shown.extend([listing.text, client.get("/readyz").text])
    for text in shown:
        assert str(settings.storage.data_dir) not in text, text
        assert without_paths(text) == text, text  # no absolute path of any kind
        assert "Traceback" not in text, text

    # The queue is still alive: a normal document uploaded afterwards becomes ready.
    normal = _upload(client, tenant_a, "after.md", f"# After\n\n{SENTENCE * 5}".encode())
    assert _settle(client, tenant_a, normal.json()["documents"][0]["id"])["status"] == "ready"
    assert client.get("/readyz").status_code == 200

    # Nothing was written outside the tenant's folder (besides the database and the index).
    tenant_folder = Path("files") / tenant_a.scope.tenant_id
    index_folder = settings.index_path.relative_to(settings.storage.data_dir)
    assert not _stray(_tree(settings.storage.data_dir) - before, tenant_folder, index_folder)
    leftovers = [p for p in (settings.storage.data_dir / tenant_folder).rglob(".upload-*")]
    assert not leftovers, leftovers


@pytest.mark.parametrize(
    "name",
    ["../../x", "..\\..\\x.md", "/etc/passwd", "a\x00b\r\nX-Injected: 1\x1b[31m.md", "..", " \t"],
)
def test_hostile_filenames_stay_inside_the_tenant_folder(
    client: TestClient, settings: Settings, tenant_a: TenantCredentials, name: str
) -> None:
    before = _tree(settings.storage.data_dir.parent)
    body = f"# Note\n\n{SENTENCE} {name!r}".encode()
    response = _upload(client, tenant_a, name, body)
    assert response.status_code == 202, response.text
    doc = response.json()["documents"][0]
    # The stored name is one plain path segment, without control characters.
    assert "/" not in doc["filename"] and "\\" not in doc["filename"]
    assert doc["filename"] not in ("", ".", "..")
    assert all(ch.isprintable() for ch in doc["filename"]), doc["filename"]
    assert _settle(client, tenant_a, doc["id"])["status"] == "ready"
    # The download's headers carry no injected header.
    download = client.get(f"/v1/documents/{doc['id']}/file", headers=tenant_a.headers)
    assert download.status_code == 200 and download.content == body
    assert "x-injected" not in download.headers
    root = settings.storage.data_dir.parent
    tenant_folder = settings.files_dir.relative_to(root) / tenant_a.scope.tenant_id
    index_folder = settings.index_path.relative_to(root)
    assert not _stray(_tree(root) - before, tenant_folder, index_folder)


def test_in_process_ingestion_is_bounded_in_time(settings: Settings, make_tenant: Any) -> None:
    """Threads cannot be killed: the in-process pipeline checks the time limit between
    stages and embedding batches, and fails the document past it (with nothing indexed)."""
    from core.db import Database
    from core.models import Chunk, Document, DocumentStatus
    from ingest.documents import add_document
    from ingest.pipeline import process_document

    tenant = make_tenant()
    # model_copy skips validation (with_changes would refuse a limit under 10 s): a limit of
    # 0 s is over as soon as parsing is done.
    ingest = settings.ingest.model_copy(update={"time_limit_s": 0})
    hurried = settings.model_copy(update={"ingest": ingest})
    db = Database.from_settings(settings)
    services = make_services(hurried, db)
    try:
        with db.session() as session:
            text = io.BytesIO(f"# Slow\n\n{SENTENCE * 20}".encode())
            doc_id = add_document(session, settings, tenant.scope, "slow.md", text).document.id
        status = process_document(services, tenant.scope.tenant_id, doc_id, final_attempt=True)
        assert status == DocumentStatus.FAILED
        with db.session() as session:
            doc = session.get(Document, doc_id)
            assert doc is not None and doc.error is not None
            assert "longer than the limit of 0 s" in doc.error
            assert session.query(Chunk).filter(Chunk.document_id == doc_id).count() == 0
    finally:
        services.close()
        db.dispose()
