"""The index is derived data: with its folder deleted, ``ragkb reindex`` (one tenant, or
every tenant) rebuilds it from the chunks table without re-parsing, and searches answer as
before: the same chunks, in the same order, with the same scores (to rounding)."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli import app as cli_app
from core.settings import Settings, get_settings
from tests.support.helpers import TenantCredentials

DOCS = {
    "travel.md": b"# Travel\n\nFlights are booked through the travel portal. Economy class is "
    b"the default for flights under six hours.\n\n## Hotels\n\nHotel stays are reimbursed up "
    b"to 180 euros per night in large cities.\n",
    "security.md": b"# Security\n\nBadges are collected at the front desk of building C. Lost "
    b"badges are reported to the security office within one day.\n",
    "it.md": b"# IT\n\nLaptops are replaced every four years. Passwords rotate every ninety "
    b"days and need twelve characters.\n",
}
QUERIES = ["hotel reimbursement per night", "lost badge", "password length", "economy flights"]
MODES = ["hybrid", "dense", "bm25"]


def _client(settings: Settings) -> TestClient:
    from tests.support.helpers import make_app

    return TestClient(make_app(settings), raise_server_exceptions=False)


def _ingest(client: TestClient, creds: TenantCredentials) -> None:
    files = [("files", (n, io.BytesIO(d), "text/markdown")) for n, d in DOCS.items()]
    ids = [d["id"] for d in client.post("/v1/documents", files=files,
                                        headers=creds.headers).json()["documents"]]  # fmt: skip
    deadline = time.monotonic() + 90
    for doc_id in ids:
        while client.get(f"/v1/documents/{doc_id}", headers=creds.headers).json()["status"] \
                != "ready":  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.1)


def _results(client: TestClient, creds: TenantCredentials) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for query in QUERIES:
        for mode in MODES:
            body = {"query": query, "mode": mode, "top_k": 5}
            r = client.post("/v1/search", json=body, headers=creds.headers)
            assert r.status_code == 200, r.text
            out[f"{mode}:{query}"] = [(h["chunk_id"], h["score"]) for h in r.json()["hits"]]
    return out


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[CliRunner]:
    monkeypatch.setenv("RAGKB_DATA_DIR", str(settings.storage.data_dir))
    for name in ("RAGKB_DATABASE_URL", "RAGKB_QDRANT_URL", "RAGKB_QDRANT_PATH"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def _same(before: dict[str, list[Any]], after: dict[str, list[Any]]) -> None:
    assert before.keys() == after.keys()
    for key, hits in before.items():
        assert [c for c, _ in after[key]] == [c for c, _ in hits], key
        for (_, old), (_, new) in zip(hits, after[key], strict=True):
            assert new == pytest.approx(old, rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("scope", ["one tenant", "all tenants"])
def test_a_deleted_index_is_rebuilt_from_chunks_with_the_same_results(
    settings: Settings,
    tenant_a: TenantCredentials,
    tenant_b: TenantCredentials,
    cli: CliRunner,
    scope: str,
) -> None:
    with _client(settings) as client:
        _ingest(client, tenant_a)
        _ingest(client, tenant_b)
        before = {t.scope.slug: _results(client, t) for t in (tenant_a, tenant_b)}
    assert all(hits for hits in before["tenant-a"].values())

    shutil.rmtree(settings.index_path)
    with _client(settings) as client:  # lost index: nothing to find
        r = client.post("/v1/search", json={"query": "lost badge"}, headers=tenant_a.headers)
        assert r.status_code == 200 and r.json()["hits"] == []

    args = ["reindex", "--tenant", "tenant-a"] if scope == "one tenant" else ["reindex"]
    result = cli.invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert "tenant tenant-a:" in result.output and "chunks re-indexed" in result.output
    with _client(settings) as client:
        _same(before["tenant-a"], _results(client, tenant_a))
        if scope == "all tenants":
            _same(before["tenant-b"], _results(client, tenant_b))
        else:  # only tenant A was rebuilt
            r = client.post("/v1/search", json={"query": "lost badge"}, headers=tenant_b.headers)
            assert r.json()["hits"] == []
