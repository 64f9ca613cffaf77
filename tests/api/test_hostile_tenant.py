"""A hostile tenant against the real app (#20): quotas hold under parallel requests on
SQLite and PostgreSQL, eval runs count against the daily question quota, one tenant's
pile of uploads does not hold another's small file, and nothing public shows paths or
other tenants' activity (``/readyz``, ``/metrics``)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core import tenants
from core.db import Database
from core.models import KeyRole
from core.settings import Settings
from core.tenancy import TenantScope
from tests.support.helpers import ADMIN_KEY, TenantCredentials, assert_error, make_app

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def any_db_client(any_db_settings: Settings) -> Iterator[TestClient]:
    with TestClient(make_app(any_db_settings), raise_server_exceptions=False) as client:
        yield client


def _tenant(settings: Settings) -> TenantCredentials:
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            tenant = tenants.create_tenant(session, f"t-{uuid.uuid4().hex[:10]}")
            issued = tenants.issue_key(session, role=KeyRole.TENANT, tenant=tenant)
            scope = TenantScope(tenant_id=tenant.id, slug=tenant.slug, api_key_id=issued.key.id)
            return TenantCredentials(scope=scope, key=issued.plaintext, key_id=issued.key.id)
    finally:
        db.dispose()


def _limits(client: TestClient, tenant: TenantCredentials, **limits: Any) -> None:
    url = f"/v1/admin/tenants/{tenant.scope.slug}/limits"
    assert client.patch(url, json=limits, headers=ADMIN).status_code == 200


def _in_parallel(calls: list[Callable[[], Any]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [f.result() for f in [pool.submit(call) for call in calls]]


def _codes(responses: list[Any]) -> Counter[str]:
    return Counter(
        str(r.status_code) if r.status_code < 400 else r.json()["error"]["code"] for r in responses
    )


def test_parallel_uploads_cannot_pass_the_document_quota_together(
    any_db_client: TestClient, any_db_settings: Settings
) -> None:
    """Room for one more document, ten parallel uploads: one is accepted (before the fix,
    all ten were: each checked before any of the others had inserted)."""
    tenant = _tenant(any_db_settings)
    _limits(any_db_client, tenant, max_documents=1)

    def upload(n: int) -> Callable[[], Any]:
        files = {"files": (f"doc-{n}.txt", f"document number {n}\n".encode())}
        return lambda: any_db_client.post("/v1/documents", files=files, headers=tenant.headers)

    codes = _codes(_in_parallel([upload(n) for n in range(10)]))
    assert codes == {"202": 1, "quota_documents": 9}, codes
    _limits(any_db_client, tenant, max_documents=3)  # room for two more
    codes = _codes(_in_parallel([upload(n) for n in range(10, 22)]))
    assert codes == {"202": 2, "quota_documents": 10}, codes


def test_parallel_questions_cannot_pass_the_daily_quota_together(
    any_db_client: TestClient, any_db_settings: Settings
) -> None:
    """One question left today, four asked at once: one is answered (all four were)."""
    tenant = _tenant(any_db_settings)
    _limits(any_db_client, tenant, max_queries_per_day=1)
    ask = {"question": "What is the parking policy?"}

    def question() -> Any:
        return any_db_client.post("/v1/query", json=ask, headers=tenant.headers)

    responses = _in_parallel([question] * 4)
    codes = _codes(responses)
    assert codes == {"200": 1, "quota_queries": 3}, codes
    refused = next(r for r in responses if r.status_code == 429)
    assert_error(refused, 429, "quota_queries")


EVAL_SET = "question,expected_documents\n" + "".join(
    f"Question number {n} about parking?,parking.md\n" for n in range(5)
)


def test_eval_runs_count_against_the_daily_question_quota(
    client: TestClient, tenant_a: TenantCredentials, tenant_b: TenantCredentials
) -> None:
    """An eval run's questions are questions: a tenant over its quota cannot run one (it
    ran 300 answered questions), and a run that fits uses the quota up."""
    _limits(client, tenant_a, max_queries_per_day=6)

    def run(questions: str) -> Any:
        return client.post(
            "/v1/eval/runs",
            files={"file": ("set.csv", questions.encode(), "text/csv")},
            data={"modes": "bm25", "answers": "false", "baselines": "false"},
            headers=tenant_a.headers,
        )

    too_many = EVAL_SET + "One question too many?,parking.md\nAnd another?,parking.md\n"
    error = assert_error(run(too_many), 429, "quota_queries")
    assert "6 left today, 7 asked at once" in error["message"]
    assert run(EVAL_SET).status_code == 202  # 5 of 6
    ask = {"question": "When does the car park open?"}
    assert client.post("/v1/query", json=ask, headers=tenant_a.headers).status_code == 200
    assert_error(client.post("/v1/query", json=ask, headers=tenant_a.headers), 429)
    assert_error(run(EVAL_SET), 429, "quota_queries")
    # Another tenant's quota is its own.
    assert client.post("/v1/query", json=ask, headers=tenant_b.headers).status_code == 200


def test_an_over_long_eval_question_is_refused_at_upload_without_internals(
    client: TestClient, tenant_a: TenantCredentials
) -> None:
    questions = "question,expected_documents\n" + "why " * 1500 + ",a.md\n"
    r = client.post(
        "/v1/eval/runs",
        files={"file": ("long.csv", questions.encode(), "text/csv")},
        headers=tenant_a.headers,
    )
    error = assert_error(r, 400, "invalid_question_set")
    assert "line 2" in error["message"] and "4,000 characters" in error["message"]
    assert "pydantic" not in r.text and "ValidationError" not in r.text


def test_eval_failure_messages_show_no_library_text_or_paths() -> None:
    from pydantic import BaseModel, Field, ValidationError

    from eval.runs import failure_message

    class Asked(BaseModel):
        query: str = Field(max_length=5)

    with pytest.raises(ValidationError) as caught:
        Asked(query="far too long")
    message = failure_message(caught.value)
    assert message.startswith("a question could not be asked (query: ")
    assert "pydantic.dev" not in message and "far too long" not in message
    internal = failure_message(OSError("[Errno 2] No such file: '/srv/ragkb/eval/x/report'"))
    assert "/srv" not in internal and "Errno" not in internal


def test_readyz_tells_the_public_ready_and_nothing_more(
    client: TestClient, tenant_a: TenantCredentials
) -> None:
    public = client.get("/readyz")
    assert public.status_code == 200 and public.json() == {"status": "ready"}
    detailed = client.get("/readyz", headers=ADMIN).json()
    assert detailed["status"] == "ready" and detailed["checks"]["database"]["ok"] is True
    assert_error(client.get("/readyz", headers=tenant_a.headers), 403, "admin_key_required")


def test_readyz_not_ready_says_only_that_in_public(settings: Settings) -> None:
    down = settings.with_changes(storage={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(make_app(down), raise_server_exceptions=False) as client:
        public = client.get("/readyz")
        detailed = client.get("/readyz", headers=ADMIN)
    error = assert_error(public, 503)
    assert error["message"] == "not ready" and set(public.json()) == {"error"}
    assert detailed.json()["checks"]["rate_limiter"]["ok"] is False


def test_metrics_need_the_metrics_token_or_the_admin_key(
    settings: Settings, tenant_a: TenantCredentials
) -> None:
    token = "scrape-" + uuid.uuid4().hex
    configured = settings.with_changes(observability={"metrics_token": token})
    with TestClient(make_app(configured), raise_server_exceptions=False) as client:
        assert_error(client.get("/metrics"), 401, "missing_api_key")
        assert_error(client.get("/metrics", headers=tenant_a.headers), 403)
        assert_error(client.get("/metrics", headers={"Authorization": "Bearer nope"}), 401)
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert scraped.status_code == 200 and "ragkb_" in scraped.text
        assert client.get("/metrics", headers=ADMIN).status_code == 200


def test_one_tenants_pile_of_uploads_does_not_hold_anothers_small_file(
    settings: Settings,
    make_tenant: Callable[..., TenantCredentials],
) -> None:
    """Tenant A queues many files at once; tenant B's one small file is taken by the
    worker A cannot use (A runs one at a time) and is ready long before A's pile is."""
    configured = settings.with_changes(ingest={"workers": 2})
    heavy, light = make_tenant(), make_tenant()
    paragraph = "The warehouse audit found the loading docks in good order. " * 400
    with TestClient(make_app(configured), raise_server_exceptions=False) as client:
        files = [
            ("files", (f"pile-{n}.txt", f"{n} {paragraph}".encode(), "text/plain"))
            for n in range(12)
        ]
        assert client.post("/v1/documents", files=files, headers=heavy.headers).status_code == 202
        small = {"files": ("note.txt", b"The cafeteria opens at 7:30.\n", "text/plain")}
        r = client.post("/v1/documents", files=small, headers=light.headers)
        doc_id = r.json()["documents"][0]["id"]
        deadline = time.monotonic() + 60
        while True:
            status = client.get(f"/v1/documents/{doc_id}", headers=light.headers).json()["status"]
            if status == "ready":
                break
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
        pile = client.get("/v1/documents?limit=50", headers=heavy.headers).json()["items"]
        still_waiting = [d for d in pile if d["status"] == "queued"]
        assert len(still_waiting) >= 6, [d["status"] for d in pile]
