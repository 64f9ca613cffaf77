"""Tenant isolation on every route: tenant B, with its own valid key, tries tenant A's ids
on every route of the OpenAPI spec that takes one, and crafted filters on search and query.
Another tenant's id is a 404 (never 403: existence is not confirmed), and nothing of A's
ever comes back. Document metadata too: one tenant's organisation names never filter,
prefer or show up in another's searches and listings."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core import db as database
from core.settings import Settings
from services.container import Services
from tests.support.helpers import TenantCredentials, assert_error
from tests.support.indexed_docs import index_document

SECRET = "The Orion merger closes on 14 March; the code word is PELICAN-7."
# Path parameters of tenant routes and which of tenant A's ids goes into each. A new route
# with another parameter fails the walk until it is added here (and so, tested).
TENANT_PARAMS = {"document_id", "run_id"}
ADMIN_PREFIX = "/v1/admin/"
# A valid body for each walked operation that takes one (so that the answer is about the
# id, not the body). A new operation with a body fails the walk until it is added here.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/v1/documents/{document_id}"): {"metadata": {"organisation": "Hijacked"}},
}


def _wait_ready(client: TestClient, tenant: TenantCredentials, document_id: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        doc = client.get(f"/v1/documents/{document_id}", headers=tenant.headers).json()
        if doc["status"] in ("ready", "failed"):
            assert doc["status"] == "ready", doc
            return
        assert time.monotonic() < deadline, "document did not become ready"
        time.sleep(0.3)


@pytest.fixture
def a_document(client: TestClient, tenant_a: TenantCredentials) -> str:
    files = {"files": ("orion.md", f"# Orion\n\n{SECRET}\n".encode(), "text/markdown")}
    r = client.post("/v1/documents", files=files, headers=tenant_a.headers)
    assert r.status_code == 202, r.text
    document_id: str = r.json()["documents"][0]["id"]
    _wait_ready(client, tenant_a, document_id)
    return document_id


@pytest.fixture
def a_eval_run(settings: Settings, tenant_a: TenantCredentials) -> str:
    """A stored eval run of tenant A (queued: its status does not matter for the walk)."""
    from eval.runner import RunOptions
    from eval.runs import create_run

    db = database.Database.from_settings(settings)
    try:
        with db.session() as session:
            return create_run(session, tenant_a.scope, "orion", RunOptions(), questions=[]).id
    finally:
        db.dispose()


def test_every_route_with_an_id_hides_other_tenants_data(
    client: TestClient,
    tenant_a: TenantCredentials,
    tenant_b: TenantCredentials,
    a_document: str,
    a_eval_run: str,
) -> None:
    spec = client.get("/openapi.json").json()
    walked = 0
    for path, operations in spec["paths"].items():
        params = set(re.findall(r"{(\w+)}", path))
        if not params or path.startswith(ADMIN_PREFIX):
            continue
        assert params <= TENANT_PARAMS, f"{path}: add its parameters to this test"
        url = path.format(document_id=a_document, run_id=a_eval_run)
        for method, operation in operations.items():
            body = BODIES.get((method, path))
            if "requestBody" in operation:
                assert body is not None, f"{method} {path}: add a valid body to BODIES"
            r = client.request(method.upper(), url, headers=tenant_b.headers, json=body)
            assert_error(r, 404)
            assert SECRET not in r.text
            walked += 1
    assert walked >= 4
    # And A still has everything (B's DELETE did nothing).
    r = client.get(f"/v1/documents/{a_document}/file", headers=tenant_a.headers)
    assert r.status_code == 200 and SECRET.encode() in r.content
    r = client.get(f"/v1/documents/{a_document}", headers=tenant_a.headers)
    assert r.json()["metadata"] == {} and "Hijacked" not in r.text  # B's PATCH did nothing


def test_search_and_query_never_cross_tenants(
    client: TestClient, tenant_a: TenantCredentials, tenant_b: TenantCredentials, a_document: str
) -> None:
    crafted: list[dict[str, Any]] = [
        {},
        {"document_ids": [a_document]},
        {"tags": ["*"]},
        {"mode": "bm25"},
        {"mode": "dense"},
        {"rerank": False},
    ]
    for extra in crafted:
        body = {"query": "Orion merger code word PELICAN", **extra}
        r = client.post("/v1/search", json=body, headers=tenant_b.headers)
        assert r.status_code == 200, r.text
        assert r.json()["hits"] == [], extra
        q = {
            "question": "What is the Orion merger code word?",
            **{k: v for k, v in extra.items() if k != "query"},
        }
        r = client.post("/v1/query", json=q, headers=tenant_b.headers)
        assert r.status_code == 200, r.text
        assert "PELICAN" not in r.text and a_document not in r.text, extra
    # A finds its own secret with the same question.
    r = client.post(
        "/v1/search", json={"query": "Orion merger code word"}, headers=tenant_a.headers
    )
    assert any("PELICAN" in hit["text"] for hit in r.json()["hits"])


def test_document_list_and_feedback_stay_within_the_tenant(
    client: TestClient, tenant_a: TenantCredentials, tenant_b: TenantCredentials, a_document: str
) -> None:
    listed = client.get("/v1/documents", headers=tenant_b.headers).json()
    assert listed["items"] == [] and listed["total"] == 0
    asked = client.post(
        "/v1/query",
        json={"question": "When does the Orion merger close?"},
        headers=tenant_a.headers,
    )
    query_id = asked.json()["query_id"]
    r = client.post(
        "/v1/feedback", json={"query_id": query_id, "rating": "down"}, headers=tenant_b.headers
    )
    assert_error(r, 404)


def test_one_tenants_metadata_never_shapes_anothers_search(
    client: TestClient,
    services: Services,
    tenant_a: TenantCredentials,
    tenant_b: TenantCredentials,
    a_document: str,
) -> None:
    """B has a document about "Apple Inc." (its own metadata); A has none about Apple."""
    with services.db.session() as session:
        index_document(
            services.indexer,
            session,
            tenant_b.scope,
            ["Revenue was 56.5 billion dollars, led by cloud services."],
            user_metadata={"organisation": "Microsoft Corporation"},
        )
        b_doc, _ = index_document(
            services.indexer,
            session,
            tenant_b.scope,
            ["Revenue grew to 94.8 billion dollars, led by iPhone sales."],
            user_metadata={"organisation": "Apple Inc.", "department": "finance"},
        )
        b_document = b_doc.id
    # B's own search prefers its Apple document: the metadata is live.
    r = client.post("/v1/search", json={"query": "Apple revenue"}, headers=tenant_b.headers)
    assert r.json()["documents"].startswith("preferred: 1 document(s)"), r.json()["documents"]
    # A: no preference from B's metadata, and a filter by B's organisation finds nothing.
    searched = client.post(
        "/v1/search", json={"query": "Apple revenue"}, headers=tenant_a.headers
    ).json()
    assert searched["documents"] == "all"
    assert b_document not in str(searched)
    for filters in ({"organisation": "Apple"}, {"metadata": {"department": "finance"}}):
        filtered = client.post(
            "/v1/search",
            json={"query": "Apple revenue", "filters": filters},
            headers=tenant_a.headers,
        ).json()
        assert filtered["hits"] == [] and filtered["documents"] == "filtered: 0 document(s)"
        asked = client.post(
            "/v1/query",
            json={"question": "What was Apple's revenue?", "filters": filters},
            headers=tenant_a.headers,
        )
        assert asked.status_code == 200, asked.text
        assert asked.json()["sources"] == [] and "94.8" not in asked.text
    # A cannot change (or learn of) B's document, and A's listings never show B's metadata.
    r = client.patch(
        f"/v1/documents/{b_document}",
        json={"metadata": {"organisation": "Orion"}},
        headers=tenant_a.headers,
    )
    assert_error(r, 404)
    listed = client.get("/v1/documents", headers=tenant_a.headers)
    assert [d["id"] for d in listed.json()["items"]] == [a_document]
    assert "Apple" not in listed.text and "finance" not in listed.text
    r = client.get(f"/v1/documents/{b_document}", headers=tenant_b.headers).json()
    assert r["metadata"] == {"organisation": "Apple Inc.", "department": "finance"}
    assert r["organisations"] == ["Apple Inc."]
