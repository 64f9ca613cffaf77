"""Redis goes away while the API is serving: questions and searches answer a clear 503 in
the error shape (the rate limiter cannot decide), ``/readyz`` says not ready, and once Redis
is back everything recovers without restarting the API.

The test runs its own redis-server on a free port (never the shared one) and stops it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.dedupe import SeenEvents
from core.errors import ServiceUnavailable
from core.settings import Settings
from tests.support.helpers import ADMIN_KEY, TenantCredentials, assert_error, make_settings
from tests.support.redis_process import RedisProcess

pytestmark = pytest.mark.skipif(not RedisProcess.available(), reason="redis-server missing")

NOTE = b"# Badges\n\nVisitors collect their badge at the front desk of building C before 9 am.\n"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(settings: Settings, own_redis: RedisProcess) -> Iterator[TestClient]:
    from tests.support.helpers import make_app

    app = make_app(make_settings(settings.storage.data_dir, storage={"redis_url": own_redis.url}))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _ask(client: TestClient, creds: TenantCredentials) -> tuple[int, int]:
    q = client.post(
        "/v1/query", json={"question": "Where are badges collected?"}, headers=creds.headers
    )
    s = client.post("/v1/search", json={"query": "badge front desk"}, headers=creds.headers)
    return q.status_code, s.status_code


def test_redis_outage_is_a_clear_503_and_recovers_without_a_restart(
    redis_client: TestClient, own_redis: RedisProcess, tenant_a: TenantCredentials
) -> None:
    client = redis_client
    up = client.post(
        "/v1/documents",
        headers=tenant_a.headers,
        files=[("files", ("badges.md", io.BytesIO(NOTE), "text/markdown"))],
    )
    doc_id = up.json()["documents"][0]["id"]
    deadline = time.monotonic() + 60
    while client.get(f"/v1/documents/{doc_id}", headers=tenant_a.headers).json()["status"] \
            != "ready":  # fmt: skip
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert _ask(client, tenant_a) == (200, 200)
    assert client.get("/readyz").status_code == 200

    own_redis.stop()
    started = time.monotonic()
    for path, body in (
        ("/v1/query", {"question": "Where are badges collected?"}),
        ("/v1/search", {"query": "badge front desk"}),
    ):
        r = client.post(path, json=body, headers=tenant_a.headers)
        error = assert_error(r, 503, "limiter_unavailable")
        assert "Redis" in error["message"]
    assert time.monotonic() - started < 10, "an outage must be answered fast, not hang"
    ready = client.get("/readyz", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert_error(ready, 503)
    assert ready.json()["checks"]["rate_limiter"]["ok"] is False
    assert client.get("/healthz").status_code == 200  # alive, only not ready

    own_redis.start()  # same port: the API reconnects by itself
    assert _ask(client, tenant_a) == (200, 200)
    assert client.get("/readyz").status_code == 200


def test_event_dedupe_says_503_when_redis_is_down(own_redis: RedisProcess) -> None:
    seen = SeenEvents(own_redis.url)
    assert seen.first_time("event-1") and not seen.first_time("event-1")
    own_redis.stop()
    with pytest.raises(ServiceUnavailable):
        seen.first_time("event-2")
    own_redis.start()
    assert seen.first_time("event-2")
