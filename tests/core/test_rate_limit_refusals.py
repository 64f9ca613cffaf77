"""A key refused for its rate is refused again at the door (no authentication, no limiter
call) until it may retry, so that one tenant's flood of 429s stays cheap (issue #8)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from core.errors import RateLimited
from core.ratelimit import Bucket, MemoryLimiter, RecentRefusals
from core.settings import Settings
from tests.support.helpers import TenantCredentials, assert_error, make_app


class CountingLimiter(MemoryLimiter):
    """The in-process limiter, counting the tokens asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.takes = 0

    def take(self, key: str, bucket: Bucket) -> float:
        self.takes += 1
        return super().take(key, bucket)


def _client(settings: Settings, memory_s: float) -> tuple[TestClient, CountingLimiter]:
    tight = settings.with_changes(
        limits={
            "rate_limit_key_rps": 0.5,
            "rate_limit_key_burst": 2,
            "rate_limit_refusal_memory_s": memory_s,
        }
    )
    app = make_app(tight)
    limiter = CountingLimiter()
    app.state.limiter = limiter
    return TestClient(app, raise_server_exceptions=False), limiter


@pytest.fixture
def door(settings: Settings) -> Iterator[tuple[TestClient, CountingLimiter]]:
    client, limiter = _client(settings, memory_s=5.0)
    with client:
        yield client, limiter


def test_a_refused_key_is_refused_at_the_door_until_it_may_retry(
    door: tuple[TestClient, CountingLimiter], make_tenant: Callable[..., TenantCredentials]
) -> None:
    client, limiter = door
    noisy, quiet = make_tenant(), make_tenant()
    assert [client.get("/v1/me", headers=noisy.headers).status_code for _ in range(2)] == [
        200,
        200,
    ]
    first = client.get("/v1/me", headers=noisy.headers)
    assert_error(first, 429, "rate_limited")
    takes = limiter.takes
    for _ in range(5):
        again = client.get("/v1/me", headers=noisy.headers)
        assert_error(again, 429, "rate_limited")
        assert int(again.headers["retry-after"]) >= 1
        assert again.json()["error"]["message"] == first.json()["error"]["message"]
    assert limiter.takes == takes  # refused without asking the limiter
    # Another tenant's key goes through as usual.
    assert client.get("/v1/me", headers=quiet.headers).status_code == 200
    assert limiter.takes > takes


def test_a_wrong_secret_is_not_refused_as_the_limited_key(
    door: tuple[TestClient, CountingLimiter], make_tenant: Callable[..., TenantCredentials]
) -> None:
    client, _ = door
    noisy = make_tenant()
    for _ in range(3):
        client.get("/v1/me", headers=noisy.headers)
    forged = {"Authorization": f"Bearer {noisy.key}x"}
    assert_error(client.get("/v1/me", headers=forged), 401)


def test_off_when_the_memory_is_zero(
    settings: Settings, make_tenant: Callable[..., TenantCredentials]
) -> None:
    client, limiter = _client(settings, memory_s=0.0)
    noisy = make_tenant()
    with client:
        for _ in range(3):
            client.get("/v1/me", headers=noisy.headers)
        takes = limiter.takes
        assert_error(client.get("/v1/me", headers=noisy.headers), 429, "rate_limited")
        assert limiter.takes > takes


def test_the_memory_ends_at_the_retry_time_or_its_cap() -> None:
    refusals = RecentRefusals(max_s=0.2)
    refusals.remember("k", RateLimited("slow down", retry_after=60))
    left = refusals.check("k")
    assert left is not None and 0 < left[0] <= 0.2 and left[1] == "slow down"
    assert refusals.check("other") is None
    time.sleep(0.25)
    assert refusals.check("k") is None
    refusals.remember("k", RateLimited("slow down", retry_after=0.01))
    time.sleep(0.05)
    assert refusals.check("k") is None
