"""``POST /v1/search`` over HTTP and ``ragkb search`` on the command line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli import app as cli_app
from core.settings import Settings, get_settings
from services.container import Services
from tests.support.helpers import ADMIN_KEY, TenantCredentials, assert_error
from tests.support.indexed_docs import index_document

HANDBOOK = [
    "Vacation policy: every employee receives 25 days of paid leave per calendar year.",
    "Expense reports must be submitted within 30 days together with the original receipts.",
]


def _index(services: Services, who: TenantCredentials, texts: list[str], **kwargs: object) -> str:
    with services.db.session() as session:
        doc, _ = index_document(services.indexer, session, who.scope, texts, **kwargs)
        return doc.id


def test_search_returns_ranked_chunks_with_scores_per_stage(
    client: TestClient, services: Services, tenant_a: TenantCredentials
) -> None:
    doc_id = _index(services, tenant_a, HANDBOOK, filename="handbook.pdf")
    response = client.post(
        "/v1/search",
        json={"query": "paid vacation days", "top_k": 2, "mode": "hybrid"},
        headers=tenant_a.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    top = body["hits"][0]
    assert top["document_id"] == doc_id and top["filename"] == "handbook.pdf"
    assert top["text"] == HANDBOOK[0] and top["page_start"] == 1
    assert set(top["scores"]) == {"dense", "bm25", "fused", "rerank"}
    assert body["reranker"].startswith("score-fusion")
    assert set(body["timings"]) >= {"retrieve_ms", "rerank_ms"}


def test_a_chinese_query_says_its_language_and_that_the_dense_leg_was_dropped(
    client: TestClient, services: Services, tenant_a: TenantCredentials
) -> None:
    doc_id = _index(services, tenant_a, ["臺北市是臺灣的首都。", "巴黎是法国的首都。"])
    body = client.post(
        "/v1/search", json={"query": "台湾的首都是哪个城市？"}, headers=tenant_a.headers
    ).json()
    assert body["hits"][0]["document_id"] == doc_id
    assert body["language"] == "zh"
    assert body["dense_leg"].startswith("dropped")
    assert "dense" not in body["hits"][0]["scores"]
    english = client.post(
        "/v1/search", json={"query": "paid vacation days"}, headers=tenant_a.headers
    ).json()
    assert english["dense_leg"] == "used"
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}  # the details are the operator's
    ready = client.get("/readyz", headers=admin).json()["checks"]["index"]
    assert ready["embedding_languages"] == "en"


def test_a_tenant_indexed_with_another_model_gets_409_until_a_reindex(
    client: TestClient, services: Services, tenant_a: TenantCredentials
) -> None:
    from core.models import Tenant

    _index(services, tenant_a, HANDBOOK)
    with services.db.session() as session:
        tenant = session.get(Tenant, tenant_a.scope.tenant_id)
        assert tenant is not None and tenant.embedding_model == "all_minilm_l6_v2"
        tenant.embedding_model = "multilingual_e5_small"  # as if indexed before a switch
    response = client.post(
        "/v1/search", json={"query": "paid vacation days"}, headers=tenant_a.headers
    )
    error = assert_error(response, 409, "embedding_model_changed")
    assert "ragkb reindex --tenant" in error["message"]
    with services.db.session() as session:
        services.indexer.rebuild(tenant_a.scope, session)
    response = client.post(
        "/v1/search", json={"query": "paid vacation days"}, headers=tenant_a.headers
    )
    assert response.status_code == 200, response.text


def test_search_is_scoped_to_the_key_tenant(
    client: TestClient,
    services: Services,
    tenant_a: TenantCredentials,
    tenant_b: TenantCredentials,
) -> None:
    a_doc = _index(services, tenant_a, HANDBOOK)
    _index(services, tenant_b, ["Vacation: 20 paid days."])
    for body in (
        {"query": "paid vacation days"},
        {"query": "paid vacation days", "document_ids": [a_doc]},
        {"query": a_doc, "mode": "bm25"},
    ):
        response = client.post("/v1/search", json=body, headers=tenant_b.headers)
        assert response.status_code == 200
        assert all(h["document_id"] != a_doc for h in response.json()["hits"])


def test_bad_requests_get_the_error_shape(
    client: TestClient, tenant_a: TenantCredentials, admin_headers: dict[str, str]
) -> None:
    assert_error(client.post("/v1/search", json={"query": "x"}), 401)
    assert_error(client.post("/v1/search", json={"query": "x"}, headers=admin_headers), 403)
    for body in ({"query": ""}, {"query": "x", "top_k": 0}, {"query": "x", "mode": "magic"}):
        assert_error(client.post("/v1/search", json=body, headers=tenant_a.headers), 422)
    assert_error(client.post("/v1/search", json={"query": "  "}, headers=tenant_a.headers), 400)


def test_cli_search_prints_hits(
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    services: Services,
    make_tenant: Callable[..., TenantCredentials],
    tmp_path: Path,
) -> None:
    who = make_tenant("cli-tenant")
    _index(services, who, HANDBOOK, filename="handbook.pdf")
    services.close()  # the CLI opens the index itself
    monkeypatch.setenv("RAGKB_DATA_DIR", str(settings.storage.data_dir))
    monkeypatch.delenv("RAGKB_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli_app, ["search", "paid vacation", "--tenant", "cli-tenant", "--json"]
        )
        assert result.exit_code == 0, result.output
        assert '"filename": "handbook.pdf"' in result.output
        result = CliRunner().invoke(cli_app, ["search", "x", "--tenant", "nobody"])
        assert result.exit_code == 1
        assert "not found" in result.output
    finally:
        get_settings.cache_clear()
