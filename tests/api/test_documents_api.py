"""The documents API against the real app: uploads are stored per tenant, queued and
processed in-process through parsing, chunking and the real index writer."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from services.container import Services
from tests.support.helpers import TenantCredentials, assert_error, make_services, make_settings

MARKDOWN = b"""# Travel policy

Employees book flights through the travel portal. Economy class is the default for
flights under six hours.

## Hotels

Hotel stays are reimbursed up to 180 euros per night in large cities.

# Expenses

Receipts are uploaded within thirty days.
"""

MARKDOWN_V2 = MARKDOWN.replace(b"180 euros", b"210 euros")


def wait_done(
    client: TestClient, creds: TenantCredentials, doc_id: str, timeout: float = 90
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/documents/{doc_id}", headers=creds.headers).json()
        if body["status"] in ("ready", "failed"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"document {doc_id} still {body['status']} after {timeout}s")


def upload(
    client: TestClient, creds: TenantCredentials, *files: tuple[str, bytes], **form: str
) -> Any:
    parts = [
        ("files", (name, io.BytesIO(data), "application/octet-stream")) for name, data in files
    ]
    return client.post("/v1/documents", headers=creds.headers, files=parts, data=form)


def test_upload_is_parsed_chunked_and_indexed(
    client: TestClient, tenant_a: TenantCredentials
) -> None:
    response = upload(client, tenant_a, ("policy.md", MARKDOWN), tags="hr, travel", title="Policy")
    assert response.status_code == 202, response.text
    [doc] = response.json()["documents"]
    assert doc["status"] == "queued" and doc["version"] == 1 and not doc["duplicate"]
    body = wait_done(client, tenant_a, doc["id"])
    assert body["status"] == "ready", body
    assert body["progress"] == 100.0 and body["chunk_count"] >= 1
    assert body["stage"] == "searchable"
    assert body["tags"] == ["hr", "travel"] and body["title"] == "Policy"
    assert body["media_type"] == "text/markdown"
    chunks = client.get(f"/v1/documents/{doc['id']}/chunks", headers=tenant_a.headers).json()
    by_text = {c["text"].split()[-1]: c for c in chunks}
    assert "Hotel stays" in by_text["cities."]["text"]
    assert by_text["cities."]["heading_path"][0] == "Travel policy"
    assert by_text["days."]["heading_path"] == ["Expenses"]
    found = client.post(
        "/v1/search", headers=tenant_a.headers, json={"query": "hotel reimbursement per night"}
    )
    assert found.status_code == 200, found.text
    assert doc["id"] in found.text
    original = client.get(f"/v1/documents/{doc['id']}/file", headers=tenant_a.headers)
    assert original.content == MARKDOWN


def encrypted_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def search_ids(client: TestClient, creds: TenantCredentials, query: str) -> set[str]:
    response = client.post("/v1/search", headers=creds.headers, json={"query": query})
    assert response.status_code == 200, response.text
    return {hit["document_id"] for hit in response.json()["hits"]}


def test_identical_bytes_return_the_existing_document(
    client: TestClient, tenant_a: TenantCredentials, settings: Settings
) -> None:
    first = upload(client, tenant_a, ("a.md", MARKDOWN)).json()["documents"][0]
    wait_done(client, tenant_a, first["id"])
    again = upload(client, tenant_a, ("renamed.md", MARKDOWN)).json()["documents"][0]
    assert again["id"] == first["id"] and again["duplicate"] is True
    listing = client.get("/v1/documents", headers=tenant_a.headers).json()
    assert listing["total"] == 1
    stored = [p for p in settings.files_dir.rglob("*") if p.is_file()]
    assert len(stored) == 1


def test_new_version_replaces_the_old_only_when_ready(
    client: TestClient, tenant_a: TenantCredentials
) -> None:
    v1 = upload(client, tenant_a, ("policy.md", MARKDOWN)).json()["documents"][0]
    assert wait_done(client, tenant_a, v1["id"])["status"] == "ready"
    # A new version that fails leaves the old one in place and searchable.
    broken = upload(client, tenant_a, ("policy.md", encrypted_pdf())).json()["documents"][0]
    assert broken["version"] == 2
    failed = wait_done(client, tenant_a, broken["id"])
    assert failed["status"] == "failed" and "password" in failed["error"]
    assert (
        client.get(f"/v1/documents/{v1['id']}", headers=tenant_a.headers).json()["status"]
        == "ready"
    )
    assert v1["id"] in search_ids(client, tenant_a, "hotel per night")
    # A good new version replaces it once ready.
    v3 = upload(client, tenant_a, ("policy.md", MARKDOWN_V2)).json()["documents"][0]
    assert v3["version"] == 3
    assert wait_done(client, tenant_a, v3["id"])["status"] == "ready"
    assert client.get(f"/v1/documents/{v1['id']}", headers=tenant_a.headers).status_code == 404
    hits = search_ids(client, tenant_a, "hotel per night")
    assert v3["id"] in hits and v1["id"] not in hits


def test_delete_removes_chunks_index_points_and_file(
    client: TestClient, tenant_a: TenantCredentials, settings: Settings
) -> None:
    doc = upload(client, tenant_a, ("policy.md", MARKDOWN)).json()["documents"][0]
    wait_done(client, tenant_a, doc["id"])
    assert doc["id"] in search_ids(client, tenant_a, "hotel per night")
    response = client.delete(f"/v1/documents/{doc['id']}", headers=tenant_a.headers)
    assert response.status_code == 204, response.text
    assert_error(client.get(f"/v1/documents/{doc['id']}", headers=tenant_a.headers), 404)
    assert doc["id"] not in search_ids(client, tenant_a, "hotel per night")
    assert not [p for p in settings.files_dir.rglob("*") if p.is_file()]
    assert_error(client.delete(f"/v1/documents/{doc['id']}", headers=tenant_a.headers), 404)


def test_other_tenants_documents_are_invisible(
    client: TestClient, tenant_a: TenantCredentials, tenant_b: TenantCredentials
) -> None:
    doc = upload(client, tenant_a, ("policy.md", MARKDOWN)).json()["documents"][0]
    wait_done(client, tenant_a, doc["id"])
    for method, suffix in [("get", ""), ("get", "/file"), ("get", "/chunks"), ("delete", "")]:
        response = client.request(
            method, f"/v1/documents/{doc['id']}{suffix}", headers=tenant_b.headers
        )
        assert_error(response, 404, "not_found")
    assert client.get("/v1/documents", headers=tenant_b.headers).json()["total"] == 0
    assert doc["id"] not in search_ids(client, tenant_b, "hotel per night")
    # The same bytes uploaded by B are B's own document, not A's.
    mine = upload(client, tenant_b, ("policy.md", MARKDOWN)).json()["documents"][0]
    assert mine["id"] != doc["id"] and mine["duplicate"] is False
    assert client.get(f"/v1/documents/{doc['id']}", headers=tenant_a.headers).status_code == 200


def test_bad_input_gets_clear_errors(client: TestClient, tenant_a: TenantCredentials) -> None:
    assert_error(upload(client, tenant_a, ("empty.txt", b"")), 422, "empty_file")
    elf = b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 8
    error = assert_error(upload(client, tenant_a, ("notes.txt", elf)), 415)
    assert "unsupported file type" in error["message"]
    response = client.post("/v1/documents", headers=tenant_a.headers, data={"title": "x"})
    assert response.status_code in (415, 422)
    no_file = client.post("/v1/documents", headers=tenant_a.headers, files={"other": ("x", b"y")})
    assert_error(no_file, 400, "no_file")
    assert client.get("/v1/documents", headers=tenant_a.headers).json()["total"] == 0
    # Found by the fuzzer: an offset past 64 bits reached the database (500).
    huge = client.get("/v1/documents", params={"offset": 10**24}, headers=tenant_a.headers)
    assert_error(huge, 422)


def test_one_bad_file_never_fails_the_batch(
    client: TestClient, tenant_a: TenantCredentials
) -> None:
    response = upload(
        client,
        tenant_a,
        ("empty.txt", b""),
        ("policy.md", MARKDOWN),
        ("locked.pdf", encrypted_pdf()),
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert [r["filename"] for r in body["rejected"]] == ["empty.txt"]
    assert body["rejected"][0]["status_code"] == 422
    by_name = {d["filename"]: d["id"] for d in body["documents"]}
    assert wait_done(client, tenant_a, by_name["policy.md"])["status"] == "ready"
    locked = wait_done(client, tenant_a, by_name["locked.pdf"])
    assert locked["status"] == "failed" and "password" in locked["error"]
    assert locked["chunk_count"] == 0
    failed = client.get("/v1/documents?status=failed", headers=tenant_a.headers).json()
    assert [d["id"] for d in failed["items"]] == [by_name["locked.pdf"]]


@pytest.fixture
def small_limit_client(tmp_path: Path, sqlite_template: Path) -> Iterator[TestClient]:
    import shutil

    from tests.support.helpers import make_app

    data_dir = tmp_path / "small"
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "ragkb.db")
    app = make_app(
        make_settings(data_dir, limits={"max_upload_bytes": 1000, "max_files_per_upload": 2})
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_oversized_upload_is_refused_with_413(small_limit_client: TestClient) -> None:
    from core import tenants
    from core.db import Database
    from core.models import KeyRole

    settings: Settings = small_limit_client.app.state.settings  # type: ignore[attr-defined]
    db = Database.from_settings(settings)
    with db.session() as session:
        tenant = tenants.create_tenant(session, "small")
        key = tenants.issue_key(session, role=KeyRole.TENANT, tenant=tenant).plaintext
    db.dispose()
    headers = {"Authorization": f"Bearer {key}"}
    big = b"word " * 400  # 2,000 bytes: over the 1,000-byte limit, streamed and counted
    response = small_limit_client.post(
        "/v1/documents", headers=headers, files=[("files", ("big.txt", big, "text/plain"))]
    )
    assert_error(response, 413, "payload_too_large")
    huge = small_limit_client.post(
        "/v1/documents",
        headers={
            **headers,
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(10**10),
        },
        content=b"--x--",
    )
    assert_error(huge, 413)
    assert not [p for p in settings.files_dir.rglob("*") if p.is_file()]


def test_full_lifecycle_on_sqlite_and_postgresql(any_db_settings: Settings) -> None:
    from core import tenants
    from core.db import Database
    from core.models import KeyRole
    from tests.support.helpers import make_app

    db = Database.from_settings(any_db_settings)
    with db.session() as session:
        tenant = tenants.create_tenant(session, "lifecycle")
        key = tenants.issue_key(session, role=KeyRole.TENANT, tenant=tenant).plaintext
    db.dispose()
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(make_app(any_db_settings), raise_server_exceptions=False) as client:
        files = [("files", ("policy.md", io.BytesIO(MARKDOWN), "text/markdown"))]
        response = client.post("/v1/documents", headers=headers, files=files, data={"tags": "hr"})
        doc_id = response.json()["documents"][0]["id"]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            body = client.get(f"/v1/documents/{doc_id}", headers=headers).json()
            if body["status"] in ("ready", "failed"):
                break
            time.sleep(0.1)
        assert body["status"] == "ready", body
        tagged = client.get("/v1/documents?tag=hr&status=ready", headers=headers).json()
        assert [d["id"] for d in tagged["items"]] == [doc_id]
        assert client.get("/v1/documents?tag=other", headers=headers).json()["total"] == 0
        assert client.delete(f"/v1/documents/{doc_id}", headers=headers).status_code == 204
        assert client.get("/v1/documents", headers=headers).json()["total"] == 0


def test_interrupted_documents_are_requeued_then_failed_and_always_cleaned(
    settings: Settings, tenant_a: TenantCredentials
) -> None:
    from datetime import timedelta

    from core.db import Database
    from core.models import Chunk, Document, DocumentStatus, utcnow
    from ingest.pipeline import reap_interrupted

    stale = utcnow() - timedelta(seconds=settings.ingest.stale_after_s + 5)
    db = Database.from_settings(settings)
    with db.session() as session:
        # Started once (a worker was killed): there is an attempt left.
        first = Document(
            tenant_id=tenant_a.scope.tenant_id,
            filename="half.md",
            sha256="f" * 64,
            status=DocumentStatus.CHUNKING,
            heartbeat_at=stale,
            attempts=1,
        )
        # Started as often as allowed: it has taken a worker down every time.
        last = Document(
            tenant_id=tenant_a.scope.tenant_id,
            filename="killer.md",
            sha256="d" * 64,
            status=DocumentStatus.EMBEDDING,
            heartbeat_at=stale,
            attempts=settings.ingest.max_attempts,
        )
        fresh = Document(
            tenant_id=tenant_a.scope.tenant_id,
            filename="busy.md",
            sha256="e" * 64,
            status=DocumentStatus.PARSING,
            heartbeat_at=utcnow(),
            attempts=1,
        )
        session.add_all([first, last, fresh])
        session.flush()
        for doc in (first, last):
            session.add(
                Chunk(tenant_id=doc.tenant_id, document_id=doc.id, version=1, ordinal=0, text="x")
            )
    services = make_services(settings, db)
    reaped = reap_interrupted(services)
    services.close()
    assert reaped.requeued == [(tenant_a.scope.tenant_id, first.id)]
    assert reaped.failed == [last.id]
    with db.session() as session:
        again = session.get(Document, first.id)
        assert again is not None and again.status == DocumentStatus.QUEUED and again.error is None
        failed = session.get(Document, last.id)
        assert failed is not None and failed.status == DocumentStatus.FAILED
        assert failed.error and "interrupted during embedding" in failed.error
        assert f"{settings.ingest.max_attempts} times" in failed.error
        # Partial chunks go either way: nothing half-written is left or searchable.
        for doc_id in (first.id, last.id):
            assert session.query(Chunk).filter(Chunk.document_id == doc_id).count() == 0
        still = session.get(Document, fresh.id)
        assert still is not None and still.status == DocumentStatus.PARSING
    db.dispose()


def test_a_retried_task_produces_the_same_chunks(
    client: TestClient, tenant_a: TenantCredentials, settings: Settings, services: Services
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from core.db import Database
    from core.models import Document, DocumentStatus, utcnow
    from ingest.pipeline import process_document

    doc = upload(client, tenant_a, ("policy.md", MARKDOWN)).json()["documents"][0]
    wait_done(client, tenant_a, doc["id"])
    chunks_url = f"/v1/documents/{doc['id']}/chunks"
    before = [(c["id"], c["text"]) for c in client.get(chunks_url, headers=tenant_a.headers).json()]
    db = Database.from_settings(settings)
    # As if its worker died after indexing, before marking it ready: the task runs again.
    stale = utcnow() - timedelta(seconds=settings.ingest.stale_after_s + 1)
    with db.session() as session:
        session.execute(
            update(Document)
            .where(Document.id == doc["id"])
            .values(status=DocumentStatus.INDEXING, heartbeat_at=stale)
        )
    status = process_document(services, tenant_a.scope.tenant_id, doc["id"], final_attempt=True)
    assert status == DocumentStatus.READY
    after = [(c["id"], c["text"]) for c in client.get(chunks_url, headers=tenant_a.headers).json()]
    assert after == before
    assert services.indexer.count(tenant_a.scope, document_id=doc["id"]) == len(before)
    # A document that is ready is not processed again.
    assert (
        process_document(services, tenant_a.scope.tenant_id, doc["id"], final_attempt=True) is None
    )
    db.dispose()


def test_listing_filters_counts_and_pages_in_sql_on_both_engines(
    any_db_settings: Settings,
) -> None:
    from datetime import UTC, datetime, timedelta

    from core import tenants
    from core.db import Database
    from core.models import Document, DocumentStatus
    from core.tenancy import TenantScope
    from ingest.documents import list_documents

    db = Database.from_settings(any_db_settings)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with db.session() as session:
        mine, other = tenants.create_tenant(session, "lister"), tenants.create_tenant(session, "x")
        scope = TenantScope(tenant_id=mine.id, slug=mine.slug)
        for i in range(7):
            # "h" must not match "hr", nor a tag that merely contains it as text.
            tags = ["hr", "travel"] if i % 2 == 0 else ["h", 'say "hr"']
            status = DocumentStatus.READY if i < 5 else DocumentStatus.FAILED
            session.add(
                Document(
                    tenant_id=mine.id,
                    filename=f"d{i}.md",
                    sha256=f"{i:064d}",
                    tags=tags,
                    status=status,
                    created_at=start + timedelta(minutes=i),
                )
            )
        session.add(Document(tenant_id=other.id, filename="o.md", sha256="f" * 64, tags=["hr"]))
        session.commit()

        page, total = list_documents(session, scope, limit=3, offset=0)
        assert total == 7 and [d.filename for d in page] == ["d6.md", "d5.md", "d4.md"]
        page, total = list_documents(session, scope, limit=3, offset=6)
        assert total == 7 and [d.filename for d in page] == ["d0.md"]
        hr, total = list_documents(session, scope, tag="hr")
        assert total == 4 and {d.filename for d in hr} == {"d0.md", "d2.md", "d4.md", "d6.md"}
        ready_hr, total = list_documents(session, scope, tag="hr", status=DocumentStatus.READY)
        assert total == 3 and {d.filename for d in ready_hr} == {"d0.md", "d2.md", "d4.md"}
        assert list_documents(session, scope, tag='say "hr"')[1] == 3
        assert list_documents(session, scope, tag="nope") == ([], 0)
    db.dispose()
