"""Document metadata over HTTP: given at upload (``metadata`` form field) or changed with
``PATCH /v1/documents/{id}``, shown by ``GET``, and used by the ``filters`` of
``/v1/search`` and ``/v1/query``; a changed title, organisation, period or type re-indexes
the document's chunks with the new contextual header."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ingest import documents as ingest_documents
from retrieval import bm25
from services.container import Services
from tests.api.test_documents_api import upload, wait_done
from tests.support.helpers import TenantCredentials, assert_error
from tests.support.indexed_docs import index_document

LEGAL = b"# Contract review\n\nEvery supplier contract is reviewed by counsel before signature.\n"
HR = b"# Onboarding\n\nEvery new employee receives a laptop on their first day.\n"
ALLOWED = "organisation, period, document_type, title, metadata"


def _index(services: Services, who: TenantCredentials, texts: list[str], **kwargs: Any) -> str:
    with services.db.session() as session:
        doc, _ = index_document(services.indexer, session, who.scope, texts, **kwargs)
        return doc.id


def _search(client: TestClient, who: TenantCredentials, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/search", json=body, headers=who.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _hit_documents(result: dict[str, Any]) -> set[str]:
    return {h["document_id"] for h in result["hits"]}


def _indexed_terms(services: Services, who: TenantCredentials, document_id: str) -> set[int]:
    points = services.indexer.vector_index.points(
        who.scope, document_id=document_id, with_vectors=True
    )
    assert points
    return {i for p in points if p.sparse is not None for i in p.sparse.indices}


def _term(word: str) -> int:
    [term] = bm25.tokenize(word)
    return bm25.term_id(term)


def test_upload_with_metadata_is_shown_and_filters_by_it(
    client: TestClient, tenant_a: TenantCredentials
) -> None:
    legal = upload(
        client,
        tenant_a,
        ("contracts.md", LEGAL),
        metadata=json.dumps({"department": "legal", "organisation": "Acme Corp", "year": 2024}),
    )
    assert legal.status_code == 202, legal.text
    hr = upload(client, tenant_a, ("onboarding.md", HR), metadata='{"department": "hr"}')
    legal_id, hr_id = legal.json()["documents"][0]["id"], hr.json()["documents"][0]["id"]
    body = wait_done(client, tenant_a, legal_id)
    assert wait_done(client, tenant_a, hr_id)["status"] == "ready"
    assert body["status"] == "ready", body
    assert body["metadata"] == {"department": "legal", "organisation": "Acme Corp", "year": 2024}
    # The effective facts: the tenant's organisation over what ingestion found.
    assert body["organisations"] == ["Acme Corp"]
    assert body["title"] == "Contract review" and body["extracted"]["title"] == "Contract review"
    assert set(body) >= {"period", "period_end", "document_type", "extracted"}
    listed = client.get("/v1/documents", headers=tenant_a.headers).json()["items"]
    assert {d["id"]: d["metadata"].get("department") for d in listed} == {
        legal_id: "legal",
        hr_id: "hr",
    }

    question = "Who reviews contracts and who gets a laptop?"
    both = _search(client, tenant_a, query=question)
    assert _hit_documents(both) == {legal_id, hr_id}
    only_legal = _search(
        client, tenant_a, query=question, filters={"metadata": {"department": "legal"}}
    )
    assert _hit_documents(only_legal) == {legal_id}
    assert only_legal["documents"] == "filtered: 1 document(s)"
    by_org = _search(client, tenant_a, query=question, filters={"organisation": "Acme"})
    assert _hit_documents(by_org) == {legal_id}

    asked = client.post(
        "/v1/query",
        json={"question": question, "filters": {"metadata": {"department": "hr"}}},
        headers=tenant_a.headers,
    )
    assert asked.status_code == 200, asked.text
    sources = asked.json()["sources"]
    assert sources and {s["document_id"] for s in sources} == {hr_id}


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        ("{department: legal}", "not valid JSON"),
        ('["legal"]', "must be a JSON object"),
        ('{"owner": {"name": "Ann"}}', "'owner' must be text, a number"),
        ('{"codes": [[1, 2]]}', "a list may hold text, numbers and booleans only"),
        ('{"organisation": 42}', "'organisation' overrides the extracted organisation"),
        ('{"score": NaN}', "NaN or Infinity"),
        (json.dumps({f"k{i}": i for i in range(51)}), "51 keys; at most 50"),
        (json.dumps({"notes": "x" * 9000}), "larger than 8,192 bytes"),
    ],
)
def test_invalid_upload_metadata_is_a_422_in_the_one_shape_and_stores_nothing(
    client: TestClient, tenant_a: TenantCredentials, metadata: str, problem: str
) -> None:
    response = upload(client, tenant_a, ("contracts.md", LEGAL), metadata=metadata)
    error = assert_error(response, 422, "invalid_metadata")
    assert problem in error["message"]
    assert client.get("/v1/documents", headers=tenant_a.headers).json()["total"] == 0


def test_patch_merges_metadata_and_filters_see_it_at_once(
    client: TestClient, services: Services, tenant_a: TenantCredentials
) -> None:
    doc = _index(services, tenant_a, ["Net sales rose eight percent in the quarter."])
    other = _index(services, tenant_a, ["Operating expenses were flat in the quarter."])
    query = "sales in the quarter"
    legal = {"metadata": {"department": "legal"}}
    assert _search(client, tenant_a, query=query, filters=legal)["hits"] == []

    r = client.patch(
        f"/v1/documents/{doc}",
        json={"metadata": {"department": "legal", "tags": ["q1", "draft"]}},
        headers=tenant_a.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["metadata"] == {"department": "legal", "tags": ["q1", "draft"]}
    assert _hit_documents(_search(client, tenant_a, query=query, filters=legal)) == {doc}
    listed = _search(client, tenant_a, query=query, filters={"metadata": {"tags": "draft"}})
    assert _hit_documents(listed) == {doc}

    # Merge: a key not named stays; null removes one.
    r = client.patch(
        f"/v1/documents/{doc}", json={"metadata": {"tags": None}}, headers=tenant_a.headers
    )
    assert r.json()["metadata"] == {"department": "legal"}
    # Replace: the given object is the whole metadata.
    r = client.patch(
        f"/v1/documents/{doc}",
        json={"metadata": {"department": "finance"}, "replace": True},
        headers=tenant_a.headers,
    )
    assert r.json()["metadata"] == {"department": "finance"}
    assert _search(client, tenant_a, query=query, filters=legal)["hits"] == []
    finance = {"metadata": {"department": "finance"}}
    assert _hit_documents(_search(client, tenant_a, query=query, filters=finance)) == {doc}
    assert other not in _hit_documents(_search(client, tenant_a, query=query, filters=finance))

    bad = client.patch(
        f"/v1/documents/{doc}", json={"metadata": {"a": {"b": 1}}}, headers=tenant_a.headers
    )
    assert "'a' must be text" in assert_error(bad, 422, "invalid_metadata")["message"]
    unknown = client.patch(
        f"/v1/documents/{doc}", json={"metadata": {}, "tags": ["x"]}, headers=tenant_a.headers
    )
    assert_error(unknown, 422, "validation_error")
    assert_error(
        client.patch("/v1/documents/nope", json={"metadata": {}}, headers=tenant_a.headers), 404
    )


def test_patching_the_organisation_reindexes_the_contextual_header(
    client: TestClient, services: Services, tenant_a: TenantCredentials
) -> None:
    doc = _index(services, tenant_a, ["Net sales rose eight percent.", "Margins held."])
    zyx = _term("Zyxcorp")
    assert zyx not in _indexed_terms(services, tenant_a, doc)
    r = client.patch(
        f"/v1/documents/{doc}",
        json={"metadata": {"organisation": "Zyxcorp Industries", "period": "Q1 2024"}},
        headers=tenant_a.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["organisations"] == ["Zyxcorp Industries"]
    assert r.json()["period"] == "2024-Q1"
    # Re-indexed before the answer (a small document): every chunk's header names it.
    points = services.indexer.vector_index.points(
        tenant_a.scope, document_id=doc, with_vectors=True
    )
    assert len(points) == 2
    assert all(p.sparse is not None and zyx in p.sparse.indices for p in points)
    found = _search(client, tenant_a, query="Zyxcorp", mode="bm25")
    assert _hit_documents(found) == {doc}
    # A key outside the header changes no point.
    r = client.patch(
        f"/v1/documents/{doc}", json={"metadata": {"owner": "ann"}}, headers=tenant_a.headers
    )
    assert r.status_code == 200 and zyx in _indexed_terms(services, tenant_a, doc)


def test_a_large_document_is_reindexed_by_a_queued_task(
    client: TestClient,
    services: Services,
    tenant_a: TenantCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_documents, "REINDEX_INLINE_MAX_CHUNKS", 1)
    doc = _index(services, tenant_a, ["Net sales rose eight percent.", "Margins held."])
    r = client.patch(
        f"/v1/documents/{doc}",
        json={"metadata": {"title": "Quibblewick annual review"}},
        headers=tenant_a.headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Quibblewick annual review"
    term = _term("Quibblewick")
    deadline = time.monotonic() + 60
    while term not in _indexed_terms(services, tenant_a, doc):
        assert time.monotonic() < deadline, "the queued re-index did not run"
        time.sleep(0.2)


def test_an_unknown_filter_field_is_a_422_naming_the_allowed_fields(
    client: TestClient, tenant_a: TenantCredentials
) -> None:
    for path, body in (
        ("/v1/search", {"query": "revenue", "filters": {"company": "Apple"}}),
        ("/v1/query", {"question": "revenue?", "filters": {"company": "Apple"}}),
        ("/v1/query", {"question": "revenue?", "stream": True, "filters": {"ticker": "A"}}),
    ):
        response = client.post(path, json=body, headers=tenant_a.headers)
        error = assert_error(response, 422, "validation_error")
        assert "unknown filter field" in error["message"], error
        assert ALLOWED in error["message"], error


def test_the_openapi_schema_shows_the_filters_and_the_patch(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["MetadataFilters"]["properties"]) == set(ALLOWED.split(", "))
    assert "filters" in schemas["QueryIn"]["properties"]
    assert "filters" in schemas["SearchRequest"]["properties"]
    assert "patch" in spec["paths"]["/v1/documents/{document_id}"]
    upload_form = spec["paths"]["/v1/documents"]["post"]["requestBody"]["content"]
    assert "metadata" in upload_form["multipart/form-data"]["schema"]["properties"]
