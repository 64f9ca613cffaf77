"""A short load test on loopback (about 15 s): four clients ask questions while a fifth
uploads documents, against a live server on PostgreSQL and Redis. No request may fail, and
the process's memory may not grow past a bound once warm. (The full benchmark is bench/.)
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from core.settings import Settings
from tests.support.helpers import TenantCredentials, make_settings
from tests.support.live_server import serve

REDIS_URL = "redis://127.0.0.1:6379/14"
DURATION_S = float(os.environ.get("RAGKB_LOAD_TEST_S", "15"))
QUERY_CLIENTS = 4
MAX_RSS_GROWTH_MB = 300
QUESTIONS = [
    "How many vacation days do employees get?",
    "Who approves travel expenses?",
    "When are laptops replaced?",
    "Where do visitors park?",
]
TOPICS = ["vacation days", "travel expenses", "laptop replacement", "visitor parking"]


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


pytestmark = pytest.mark.skipif(not _redis_available(), reason="Redis at 127.0.0.1:6379 is down")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _document(n: int) -> bytes:
    paragraphs = [
        f"## {topic.title()} {n}\n\nPolicy {n} on {topic}: requests go to the team lead, who "
        f"answers within {n % 5 + 2} working days; exceptions need the director's approval."
        for topic in TOPICS
    ]
    return (f"# Policy update {n}\n\n" + "\n\n".join(paragraphs * 5)).encode()


@pytest.fixture
def load_settings(tmp_path: Path, pg_url: str) -> Iterator[Settings]:
    data_dir = tmp_path / "load"
    data_dir.mkdir()
    yield make_settings(
        data_dir,
        database_url=pg_url,
        storage={"redis_url": REDIS_URL},
        limits={
            "rate_limit_key_rps": 1000.0,
            "rate_limit_key_burst": 1000,
            "rate_limit_tenant_rps": 1000.0,
            "rate_limit_tenant_burst": 1000,
            "max_concurrent_queries_per_tenant": QUERY_CLIENTS + 2,
        },
    )


@pytest.fixture
def pg_tenant(load_settings: Settings) -> Iterator[TenantCredentials]:
    from core import tenants
    from core.db import Database
    from core.models import KeyRole, Tenant
    from core.tenancy import TenantScope

    db = Database.from_settings(load_settings)
    with db.session() as session:
        tenant = tenants.create_tenant(session, f"load-{os.getpid()}-{time.time_ns()}")
        issued = tenants.issue_key(session, role=KeyRole.TENANT, tenant=tenant)
        scope = TenantScope(tenant_id=tenant.id, slug=tenant.slug, api_key_id=issued.key.id)
    yield TenantCredentials(scope=scope, key=issued.plaintext, key_id=issued.key.id)
    with db.session() as session:
        row = session.get(Tenant, scope.tenant_id)
        if row is not None:
            session.delete(row)
    db.dispose()


def test_queries_and_uploads_under_load_without_errors_or_memory_growth(
    load_settings: Settings, pg_tenant: TenantCredentials
) -> None:
    from tests.support.helpers import make_app

    headers = pg_tenant.headers
    errors: list[str] = []
    latencies: list[float] = []
    ready: list[str] = []
    stop = threading.Event()

    def wait_ready(client: httpx.Client, doc_id: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = client.get(f"/v1/documents/{doc_id}", headers=headers).json()["status"]
            if status in ("ready", "failed"):
                if status != "ready":
                    errors.append(f"document {doc_id} {status}")
                ready.append(doc_id)
                return
            time.sleep(0.2)
        errors.append(f"document {doc_id} not ready in time")

    def upload(client: httpx.Client, n: int) -> str:
        files = [("files", (f"policy-{n}.md", _document(n), "text/markdown"))]
        r = client.post("/v1/documents", files=files, headers=headers)
        if r.status_code != 202:
            errors.append(f"upload {r.status_code}: {r.text[:200]}")
            return ""
        doc_id: str = r.json()["documents"][0]["id"]
        return doc_id

    def uploader(base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            n = 100
            while not stop.is_set():
                doc_id = upload(client, n)
                if doc_id:
                    wait_ready(client, doc_id)
                n += 1

    def asker(base_url: str, index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            i = index
            while not stop.is_set():
                started = time.perf_counter()
                r = client.post("/v1/query", json={"question": QUESTIONS[i % len(QUESTIONS)]},
                                headers=headers)  # fmt: skip
                latencies.append(time.perf_counter() - started)
                if r.status_code != 200:
                    errors.append(f"query {r.status_code}: {r.text[:200]}")
                i += 1

    with serve(make_app(load_settings)) as base_url:
        with httpx.Client(base_url=base_url, timeout=60) as client:
            for n in range(3):  # something to find, and every model loaded: warm
                doc_id = upload(client, n)
                assert doc_id, errors
                wait_ready(client, doc_id)
            for question in QUESTIONS:
                assert client.post("/v1/query", json={"question": question},
                                   headers=headers).status_code == 200  # fmt: skip
        warm_rss = _rss_mb()
        threads = [threading.Thread(target=uploader, args=(base_url,))]
        threads += [
            threading.Thread(target=asker, args=(base_url, i)) for i in range(QUERY_CLIENTS)
        ]
        for thread in threads:
            thread.start()
        time.sleep(DURATION_S)
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
        peak_rss = _rss_mb()

    assert not errors, errors[:10]
    # Lenient counts: CI machines may be busy; errors and memory are what this checks.
    assert len(latencies) >= QUERY_CLIENTS, "too few questions answered"
    assert len(ready) >= 4, "uploads must keep completing under query load (3 were warm-up)"
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(
        f"{len(latencies)} questions in {DURATION_S:.0f} s ({len(latencies) / DURATION_S:.1f}/s),"
        f" p50 {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms;"
        f" {len(ready)} documents ready; RSS {warm_rss:.0f} -> {peak_rss:.0f} MB"
    )
    assert peak_rss - warm_rss < MAX_RSS_GROWTH_MB, (warm_rss, peak_rss)
