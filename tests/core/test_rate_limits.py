"""Per-key and per-tenant rate limits and concurrency slots, in-process and on the real
local Redis: 429 with Retry-After in the error shape; one tenant never drains another's
bucket; Redis down means a clear 503, not a hang or a free pass."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from fastapi.testclient import TestClient

from core.errors import RateLimited, ServiceUnavailable
from core.ratelimit import Bucket, Limiter, MemoryLimiter, RedisLimiter, concurrency_slot
from core.settings import Settings
from tests.support.helpers import ADMIN_KEY, TenantCredentials, assert_error, make_app

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Limiter:
    if request.param == "memory":
        return MemoryLimiter()
    return RedisLimiter(REDIS_URL, prefix=f"ragkb-test:{uuid.uuid4().hex}:")


def test_bucket_allows_the_burst_then_says_how_long_to_wait(limiter: Limiter) -> None:
    bucket = Bucket(rate=1.0, burst=3)
    assert [limiter.take("k", bucket) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("k", bucket)
    assert 0.0 < wait <= 1.0
    assert limiter.take("other", bucket) == 0.0  # another key has its own bucket


def test_concurrency_slots_are_bounded_and_released(limiter: Limiter) -> None:
    with ExitStack() as held:
        held.enter_context(concurrency_slot(limiter, "q", 2, 60, "questions"))
        second = ExitStack()
        second.enter_context(concurrency_slot(limiter, "q", 2, 60, "questions"))
        with pytest.raises(RateLimited):
            held.enter_context(concurrency_slot(limiter, "q", 2, 60, "questions"))
        second.close()
        # The released slot is free again.
        held.enter_context(concurrency_slot(limiter, "q", 2, 60, "questions"))


def test_redis_down_is_a_clear_503() -> None:
    down = RedisLimiter("redis://127.0.0.1:1/0")
    with pytest.raises(ServiceUnavailable, match="rate limiter unavailable"):
        down.take("k", Bucket(1.0, 1))


@pytest.fixture(params=["memory", "redis"])
def limited_client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[TestClient]:
    redis_url = REDIS_URL if request.param == "redis" else None
    tight = settings.with_changes(
        storage={"redis_url": redis_url},
        limits={
            "rate_limit_key_rps": 0.01,
            "rate_limit_key_burst": 3,
            "rate_limit_tenant_rps": 0.01,
            "rate_limit_tenant_burst": 5,
        },
    )
    with TestClient(make_app(tight), raise_server_exceptions=False) as client:
        yield client


def test_over_the_key_limit_is_429_with_retry_after(
    limited_client: TestClient, make_tenant: Callable[..., TenantCredentials]
) -> None:
    noisy, quiet = make_tenant(), make_tenant()
    statuses = [limited_client.get("/v1/me", headers=noisy.headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    r = limited_client.get("/v1/me", headers=noisy.headers)
    assert_error(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    # The noisy tenant's exhausted bucket does not touch the quiet one.
    assert limited_client.get("/v1/me", headers=quiet.headers).status_code == 200


def test_tenant_limit_covers_all_its_keys(
    limited_client: TestClient, settings: Settings, make_tenant: Callable[..., TenantCredentials]
) -> None:
    from core.db import Database
    from core.models import KeyRole
    from core.tenants import get_tenant, issue_key

    first = make_tenant()
    db = Database.from_settings(settings)
    with db.session() as session:
        tenant = get_tenant(session, first.scope.tenant_id)
        second_key = issue_key(session, role=KeyRole.TENANT, tenant=tenant).plaintext
    db.dispose()
    second = {"Authorization": f"Bearer {second_key}"}
    ok = [limited_client.get("/v1/me", headers=first.headers).status_code for _ in range(3)]
    ok += [limited_client.get("/v1/me", headers=second).status_code for _ in range(2)]
    assert ok == [200] * 5
    assert_error(limited_client.get("/v1/me", headers=second), 429, "rate_limited")


def test_api_answers_503_when_redis_is_down(
    settings: Settings, tenant_a: TenantCredentials
) -> None:
    down = settings.with_changes(storage={"redis_url": "redis://127.0.0.1:1/0"})
    with TestClient(make_app(down), raise_server_exceptions=False) as client:
        assert_error(client.get("/v1/me", headers=tenant_a.headers), 503, "limiter_unavailable")
        ready = client.get("/readyz", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert_error(ready, 503, "service_unavailable")
    assert ready.json()["checks"]["rate_limiter"]["ok"] is False


def test_admin_overrides_a_tenants_limits(
    client: TestClient,
    admin_headers: dict[str, str],
    make_tenant: Callable[..., TenantCredentials],
) -> None:
    strict, other = make_tenant(), make_tenant()
    url = f"/v1/admin/tenants/{strict.scope.slug}/limits"
    r = client.patch(
        url, json={"rate_limit_key_burst": 1, "rate_limit_key_rps": 0.01}, headers=admin_headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["overrides"] == {"rate_limit_key_burst": 1, "rate_limit_key_rps": 0.01}
    assert r.json()["effective"]["rate_limit_key_burst"] == 1
    assert client.get("/v1/me", headers=strict.headers).status_code == 200
    assert_error(client.get("/v1/me", headers=strict.headers), 429, "rate_limited")
    assert [client.get("/v1/me", headers=other.headers).status_code for _ in range(3)] == [200] * 3
    # Tenant keys cannot change limits; bad values are refused in the error shape.
    assert_error(client.patch(url, json={"rate_limit_key_burst": 99}, headers=strict.headers), 403)
    assert_error(client.patch(url, json={"rate_limit_key_burst": 0}, headers=admin_headers), 422)
    assert_error(client.patch(url, json={"no_such_limit": 1}, headers=admin_headers), 422)
    reset = client.patch(url, json={"rate_limit_key_burst": None}, headers=admin_headers).json()
    assert reset["overrides"] == {"rate_limit_key_rps": 0.01}


def test_daily_question_quota(
    client: TestClient, admin_headers: dict[str, str], tenant_a: TenantCredentials
) -> None:
    url = f"/v1/admin/tenants/{tenant_a.scope.slug}/limits"
    client.patch(url, json={"max_queries_per_day": 1}, headers=admin_headers)
    first = client.post("/v1/query", json={"question": "anything?"}, headers=tenant_a.headers)
    assert first.status_code == 200, first.text
    second = client.post("/v1/query", json={"question": "again?"}, headers=tenant_a.headers)
    assert_error(second, 429, "quota_queries")
    assert int(second.headers["retry-after"]) >= 1


def test_document_and_storage_quotas(
    client: TestClient, admin_headers: dict[str, str], tenant_a: TenantCredentials
) -> None:
    url = f"/v1/admin/tenants/{tenant_a.scope.slug}/limits"
    client.patch(url, json={"max_documents": 1}, headers=admin_headers)
    upload = "/v1/documents"
    first = client.post(
        upload, files={"files": ("a.txt", b"first document\n")}, headers=tenant_a.headers
    )
    assert first.status_code == 202, first.text
    second = client.post(
        upload, files={"files": ("b.txt", b"second document\n")}, headers=tenant_a.headers
    )
    assert_error(second, 429, "quota_documents")
    # The same bytes again are the document the tenant already has: never over the quota.
    again = client.post(
        upload, files={"files": ("a.txt", b"first document\n")}, headers=tenant_a.headers
    )
    assert again.status_code == 202, again.text
    assert again.json()["documents"][0]["id"] == first.json()["documents"][0]["id"]
    assert again.json()["documents"][0]["duplicate"] is True
    client.patch(url, json={"max_documents": None, "max_stored_bytes": 20}, headers=admin_headers)
    big = client.post(
        upload, files={"files": ("c.txt", b"x" * 64 + b"\n")}, headers=tenant_a.headers
    )
    assert_error(big, 429, "quota_bytes")


def test_searches_share_the_tenants_concurrency_slots_but_not_its_question_quota(
    client: TestClient,
    admin_headers: dict[str, str],
    settings: Settings,
    make_tenant: Callable[..., TenantCredentials],
) -> None:
    busy, other = make_tenant(), make_tenant()
    url = f"/v1/admin/tenants/{busy.scope.slug}/limits"
    client.patch(url, json={"max_queries_per_day": 1}, headers=admin_headers)
    search = {"query": "anything"}
    # Searches are not questions: they do not use up the daily question quota.
    for _ in range(3):
        assert client.post("/v1/search", json=search, headers=busy.headers).status_code == 200
    # With all of its slots taken by work in flight, the busy tenant waits; the other does not.
    limiter: Limiter = client.app.state.limiter  # type: ignore[attr-defined]
    key = f"queries:{busy.scope.tenant_id}"
    held = [
        limiter.acquire_slot(key, settings.limits.max_concurrent_queries_per_tenant, 60)
        for _ in range(settings.limits.max_concurrent_queries_per_tenant)
    ]
    try:
        r = client.post("/v1/search", json=search, headers=busy.headers)
        assert_error(r, 429, "rate_limited")
        assert client.post("/v1/search", json=search, headers=other.headers).status_code == 200
    finally:
        for token in held:
            assert token is not None
            limiter.release_slot(key, token)
    assert client.post("/v1/search", json=search, headers=busy.headers).status_code == 200
