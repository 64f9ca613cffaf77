"""``ragkb backup`` / ``ragkb restore`` of one tenant into an empty installation (another
data directory, and PostgreSQL instead of SQLite): the same key works, the same question
gets the same answer with the same citations (document ids, pages), feedback and chat
workspaces come along, and restoring over an existing tenant needs ``--replace``."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli import app as cli_app
from core.db import Database
from core.models import Tenant
from core.settings import Settings, get_settings
from tests.support.helpers import SHARED_DATA, TenantCredentials, make_settings

PDF = SHARED_DATA / "docs" / "pdf" / "layout-parser-paper-fast.pdf"
NOTE = b"# Parking\n\nVisitors park on level two of the west garage; the gate code is 4417.\n"
QUESTIONS = ["What is LayoutParser?", "Where do visitors park?"]

pytestmark = pytest.mark.skipif(not PDF.exists(), reason=f"{PDF} not found")


def _client(settings: Settings) -> TestClient:
    from tests.support.helpers import make_app

    return TestClient(make_app(settings), raise_server_exceptions=False)


def _answers(client: TestClient, creds: TenantCredentials) -> list[dict[str, Any]]:
    out = []
    for question in QUESTIONS:
        r = client.post("/v1/query", json={"question": question}, headers=creds.headers)
        assert r.status_code == 200, r.text
        body = r.json()
        out.append(
            {
                "answer": body["answer"],
                "citations": [(c["document_id"], c["page_start"]) for c in body["citations"]],
                "query_id": body["query_id"],
            }
        )
    return out


def _cli(monkeypatch: pytest.MonkeyPatch, data_dir: Path, database_url: str | None) -> CliRunner:
    monkeypatch.setenv("RAGKB_DATA_DIR", str(data_dir))
    if database_url:
        monkeypatch.setenv("RAGKB_DATABASE_URL", database_url)
    else:
        monkeypatch.delenv("RAGKB_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    return CliRunner()


@pytest.fixture
def target(tmp_path: Path, pg_url: str) -> Iterator[Settings]:
    """An empty installation: its own data dir, the PostgreSQL database."""
    settings = make_settings(tmp_path / "target", database_url=pg_url)
    yield settings
    get_settings.cache_clear()
    db = Database.from_settings(settings)
    with db.session() as session:
        for tenant in session.query(Tenant).filter(Tenant.slug == "tenant-a"):
            session.delete(tenant)
    db.dispose()


def test_backup_restores_into_an_empty_installation_with_the_same_answers(
    settings: Settings,
    tenant_a: TenantCredentials,
    target: Settings,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    with _client(settings) as client:
        files = [
            ("files", (PDF.name, io.BytesIO(PDF.read_bytes()), "application/pdf")),
            ("files", ("parking.md", io.BytesIO(NOTE), "text/markdown")),
        ]
        uploaded = client.post("/v1/documents", files=files, headers=tenant_a.headers)
        ids = [d["id"] for d in uploaded.json()["documents"]]
        deadline = time.monotonic() + 120
        for doc_id in ids:
            while (doc := client.get(f"/v1/documents/{doc_id}", headers=tenant_a.headers)
                   .json())["status"] not in ("ready", "failed"):  # fmt: skip
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert doc["status"] == "ready", doc
        before = _answers(client, tenant_a)
        assert any(c[1] for a in before for c in a["citations"]), "a cited page is expected"
        r = client.post("/v1/feedback", json={"query_id": before[0]["query_id"], "rating": "up"},
                        headers=tenant_a.headers)  # fmt: skip
        assert r.status_code == 200, r.text
        slack = {"team_id": "T0BACKUP1", "bot_token": "xoxb-1", "signing_secret": "s3cret"}
        r = client.post("/v1/admin/tenants/tenant-a/slack", json=slack, headers=admin_headers)
        assert r.status_code in (200, 201), r.text

    archive = tmp_path / "backup" / "tenant-a.tar.gz"
    cli = _cli(monkeypatch, settings.storage.data_dir, None)
    result = cli.invoke(cli_app, ["backup", "--tenant", "tenant-a", "--out", str(archive)])
    assert result.exit_code == 0, result.output
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        names = tar.getnames()
    assert manifest["format"] == "ragkb-tenant-backup" and manifest["version"] == 1
    assert manifest["tables"]["documents"] == 2 and manifest["files"] == 2
    assert "tables/chunks.jsonl" in names

    cli = _cli(monkeypatch, target.storage.data_dir, target.storage.database_url)
    result = cli.invoke(cli_app, ["restore", str(archive)])
    assert result.exit_code == 0, result.output
    assert "tenant tenant-a restored" in result.output
    assert "another RAGKB_SECRET_KEY" in result.output  # the chat secrets' key differs

    with _client(target) as client:
        after = _answers(client, tenant_a)  # the same key works: its hash came along
        for old, new in zip(before, after, strict=True):
            assert new["citations"] == old["citations"]
            assert new["answer"] == old["answer"]
        listed = client.get("/v1/documents", headers=tenant_a.headers).json()
        assert sorted(d["id"] for d in listed["items"]) == sorted(ids)
        original = client.get(f"/v1/documents/{ids[0]}/file", headers=tenant_a.headers)
        assert original.status_code == 200 and original.content == PDF.read_bytes()
        r = client.post("/v1/feedback", json={"query_id": before[0]["query_id"], "rating": "down"},
                        headers=tenant_a.headers)  # fmt: skip
        assert r.status_code == 200, "the query log came along"

    again = cli.invoke(cli_app, ["restore", str(archive)])
    assert again.exit_code == 1 and "--replace" in again.output
    replaced = cli.invoke(cli_app, ["restore", str(archive), "--replace"])
    assert replaced.exit_code == 0, replaced.output
    with _client(target) as client:
        assert [a["citations"] for a in _answers(client, tenant_a)] == [
            a["citations"] for a in before
        ]


def test_restore_refuses_archives_with_unsafe_paths(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ingest.backup import FORMAT, VERSION

    archive = tmp_path / "evil.tar.gz"
    manifest = {"format": FORMAT, "version": VERSION, "tenant_id": "t-evil", "slug": "evil",
                "created_at": "2026-01-01T00:00:00+00:00", "tables": {}, "files": 1}  # fmt: skip
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in {
            "manifest.json": json.dumps(manifest).encode(),
            "files/../../escaped": b"outside",
            **{f"tables/{t}.jsonl": b"" for t in (
                "tenants", "api_keys", "documents", "chunks", "bm25_term_stats",
                "bm25_corpus_stats", "query_log", "chat_integrations")},
        }.items():  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cli = _cli(monkeypatch, settings.storage.data_dir, None)
    result = cli.invoke(cli_app, ["restore", str(archive)])
    get_settings.cache_clear()
    assert result.exit_code == 1 and "unsafe entry" in result.output, result.output
    assert not (settings.storage.data_dir.parent / "escaped").exists()
    assert not (settings.storage.data_dir / "escaped").exists()
