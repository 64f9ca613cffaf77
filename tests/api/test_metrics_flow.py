"""/metrics after real traffic through the API: a real upload (parsed, chunked, embedded and
indexed by the in-process queue), a real question answered by an OpenAI-compatible server
on localhost, and one asked while that server is down. The request counters of those
routes, the ingest stage histograms, the query stage histograms and the generator's token
and error counters all move; the tenant label carries the slug only when the (bounded)
``metrics_tenant_label`` setting allows it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.metrics import NO_TENANT
from core.settings import Settings
from tests.support.helpers import ADMIN_KEY, TenantCredentials, make_app
from tests.support.openai_server import Behaviour, OpenAITestServer, free_port

NOTES = (
    "# Maintenance\n\nThe northern pumping station is inspected every six weeks by the "
    "facilities team. Inspections follow the revised safety checklist.\n\n"
    "# Budget\n\nThe maintenance budget for the northern facilities is 2.4 million euros."
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 200
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


@pytest.fixture
def make_client(settings: Settings) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: Mapping[str, object]) -> TestClient:
        # One app at a time on this data dir, as one server process in production: the
        # embedded index takes one opener, so the previous app is shut down first.
        while clients:
            clients.pop().__exit__(None, None, None)
        client = TestClient(make_app(settings.with_changes(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def _upload_and_wait(client: TestClient, tenant: TenantCredentials) -> str:
    response = client.post(
        "/v1/documents",
        headers=tenant.headers,
        files=[("files", ("notes.md", NOTES.encode(), "text/markdown"))],
    )
    assert response.status_code == 202, response.text
    document_id: str = response.json()["documents"][0]["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.get(f"/v1/documents/{document_id}", headers=tenant.headers).json()
        if status["status"] in ("ready", "failed"):
            break
        time.sleep(0.2)
    assert status["status"] == "ready", status
    return document_id


def test_metrics_move_with_a_real_upload_and_real_questions(
    make_client: Callable[..., TestClient],
    tenant_a: TenantCredentials,
    server: OpenAITestServer,
) -> None:
    server.behaviour = Behaviour(reply="It is inspected every six weeks [1].")
    client = make_client(
        llm={"base_url": server.base_url, "model": "test-model"},
        observability={"metrics_tenant_label": True},
    )
    before = scrape(client)
    _upload_and_wait(client, tenant_a)
    answer = client.post(
        "/v1/query",
        headers=tenant_a.headers,
        json={"question": "How often is the northern pumping station inspected?"},
    )
    assert answer.status_code == 200, answer.text
    assert not answer.json()["refused"] and answer.json()["citations"]
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    # Requests, by route template.
    assert moved("ragkb_http_requests_total", method="POST", route="/v1/documents") == 1
    assert moved("ragkb_http_requests_total", method="POST", route="/v1/query", status="200") == 1
    polls = moved("ragkb_http_requests_total", method="GET", route="/v1/documents/{document_id}")
    assert polls >= 1
    assert moved("ragkb_http_request_duration_seconds_count", route="/v1/query") == 1
    # Ingestion: one observation per stage for the one document.
    for stage in ("parse", "chunk", "embed_and_index"):
        assert moved("ragkb_ingest_stage_duration_seconds_count", stage=stage) == 1, stage
    assert moved("ragkb_ingest_stage_duration_seconds_sum", stage="embed_and_index") > 0
    # Questions: each stage observed once, under the tenant's slug (the setting is on).
    for stage in ("retrieve", "generate", "end_to_end"):
        count = moved(
            "ragkb_query_stage_duration_seconds_count", stage=stage, tenant=tenant_a.scope.slug
        )
        assert count == 1, stage
    # The generator's usage came back and was counted.
    assert moved("ragkb_generator_tokens_total", kind="prompt") > 0
    assert moved("ragkb_generator_tokens_total", kind="completion") > 0

    # The generator down: the error counter moves and the answer is a 503, promptly.
    down = make_client(
        llm={"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "test-model", "retries": 0},
        observability={"metrics_tenant_label": True},
    )
    before = scrape(down)
    refused = down.post(
        "/v1/query",
        headers=tenant_a.headers,
        json={"question": "How often is the northern pumping station inspected?"},
    )
    assert refused.status_code == 503
    after = scrape(down)
    assert moved("ragkb_generator_errors_total", kind="unavailable") == 1
    assert moved("ragkb_http_requests_total", route="/v1/query", status="503") == 1
    # Retrieval ran before the generator failed: its latency is observed, an answer's is not.
    slug = tenant_a.scope.slug
    stages = "ragkb_query_stage_duration_seconds_count"
    assert moved(stages, stage="retrieve", tenant=slug) == 1
    assert moved(stages, stage="end_to_end", tenant=slug) == 0

    # The setting off (its default): no slug, one placeholder series for every tenant.
    unlabelled = make_client(llm={"base_url": server.base_url, "model": "test-model"})
    before = scrape(unlabelled)
    again = unlabelled.post(
        "/v1/query",
        headers=tenant_a.headers,
        json={"question": "What is the maintenance budget for the northern facilities?"},
    )
    assert again.status_code == 200, again.text
    after = scrape(unlabelled)
    assert (
        moved("ragkb_query_stage_duration_seconds_count", stage="retrieve", tenant=NO_TENANT) == 1
    )
    assert not any(
        dict(labels).get("tenant") == tenant_a.scope.slug
        for (name, labels), v in after.items()
        if name.startswith("ragkb_query_stage") and v != before.get((name, labels), 0.0)
    )
