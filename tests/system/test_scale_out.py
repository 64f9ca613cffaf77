"""Scale-out for real: the API as two uvicorn worker processes (``ragkb serve --workers 2``)
and two Celery worker processes on the heavy queue, sharing the local PostgreSQL and Redis.

What runs here (no Qdrant server can be installed on this machine: no PyPI, npm or Debian
package ships the binary, and there is no Docker):
- uploads spread over both API processes, stored once each, and /metrics adds up both
  processes (``PROMETHEUS_MULTIPROC_DIR``); each worker serves its own metrics
  (``RAGKB_WORKER_METRICS_PORT``), whose ingest stages add up to one per document;
- a rate limit is shared by both API processes (one Redis bucket, not one per process);
- every document is ingested exactly once although two worker processes compete for the
  queue and every task is delivered twice (a redelivery after a lost worker): the claim
  is a conditional UPDATE in PostgreSQL; chunk rows and index points are not duplicated.
  Each worker writes into an embedded index of its own (the embedded engines open in one
  process only), and the test checks their union: each document's points live in exactly
  one of them, as many as its chunks.

What needs a Qdrant server (``RAGKB_TEST_QDRANT_URL``, or a ``qdrant`` binary on PATH that
the test starts on a free port) and is skipped without one: both workers writing into one
shared collection and questions answered through both API processes from it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from core import tenants
from core.db import Database
from core.models import Chunk, Document, DocumentStatus, KeyRole
from core.settings import Settings
from core.tenancy import TenantScope
from tasks.names import TaskName
from tasks.queue import CeleryQueue
from tests.support.celery_workers import LOCAL_REDIS, Workers, clean_env, redis_available
from tests.support.helpers import (
    ADMIN_KEY,
    REPO_ROOT,
    TenantCredentials,
    make_services,
    make_settings,
)
from tests.support.live_server import free_port

REDIS_URL = f"{LOCAL_REDIS}/11"  # a database of its own
KEY_BURST = 20  # the per-key bucket both API processes must share

TOPICS = {
    "tenant-one": [
        ("pumps.md", "The northern pumping station is inspected every six weeks."),
        ("budget.md", "The maintenance budget for the northern facilities is 2.4 million."),
        ("lyon.md", "The office in Lyon opens at 8:30 and closes at 18:00 on weekdays."),
        ("keys.md", "Administrators must use hardware keys to sign in."),
    ],
    "tenant-two": [
        ("launch.md", "Globex will launch the Hammock satellite in April."),
        ("vacation.md", "Employees accrue 25 days of paid vacation per year."),
        ("audit.md", "The external audit of the ledgers happens every November."),
        ("fleet.md", "The delivery fleet has 42 electric vans."),
    ],
}

pytestmark = pytest.mark.skipif(
    not redis_available(REDIS_URL), reason="Redis at 127.0.0.1:6379 is down"
)


@contextmanager
def qdrant_server(tmp_path: Path) -> Iterator[str | None]:
    """A Qdrant server URL: RAGKB_TEST_QDRANT_URL, or a `qdrant` binary started here;
    None when neither exists."""
    if os.environ.get("RAGKB_TEST_QDRANT_URL"):
        yield os.environ["RAGKB_TEST_QDRANT_URL"]
        return
    binary = shutil.which("qdrant")
    if binary is None:
        yield None
        return
    http, grpc = free_port(), free_port()
    env = dict(
        os.environ,
        QDRANT__SERVICE__HTTP_PORT=str(http),
        QDRANT__SERVICE__GRPC_PORT=str(grpc),
        QDRANT__SERVICE__HOST="127.0.0.1",
        QDRANT__STORAGE__STORAGE_PATH=str(tmp_path / "qdrant-storage"),
        QDRANT__TELEMETRY_DISABLED="true",
    )
    with (tmp_path / "qdrant.log").open("wb") as log:
        process = subprocess.Popen([binary], cwd=tmp_path, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{http}"
    try:
        _wait_http(f"{url}/readyz", 60)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{url} did not answer within {timeout}s")


@dataclass
class Cluster:
    settings: Settings
    base_url: str
    workers: Workers
    metrics_dir: Path
    worker_index_dirs: list[Path]
    credentials: dict[str, TenantCredentials]
    limited: TenantCredentials
    worker_metrics: list[str]


@contextmanager
def cluster(tmp_path: Path, pg_url: str, qdrant_url: str | None) -> Iterator[Cluster]:
    data_dir = tmp_path / "data"
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    queues = {
        "CELERY_QUEUE": f"heavy-{uuid.uuid4().hex[:8]}",
        "CELERY_LIGHT_QUEUE": f"light-{uuid.uuid4().hex[:8]}",
    }
    common = {
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": pg_url,
        "TASK_MODE": "celery",
        "REDIS_URL": REDIS_URL,
        "ADMIN_KEY": ADMIN_KEY,
        "WARM_UP": "false",
        "INGEST_HEARTBEAT_S": "1.0",
        **queues,
    }
    if qdrant_url:
        common["QDRANT_URL"] = qdrant_url
    settings = make_settings(
        data_dir,
        database_url=pg_url,
        tasks={
            "mode": "celery",
            "celery_queue": queues["CELERY_QUEUE"],
            "celery_light_queue": queues["CELERY_LIGHT_QUEUE"],
        },
        storage={"redis_url": REDIS_URL},
        index={"qdrant_url": qdrant_url},
    )
    settings.ensure_dirs()
    credentials, limited = _tenants(settings)
    port = free_port()
    api_env = clean_env(**common, RATE_LIMIT_KEY_BURST=str(KEY_BURST), RATE_LIMIT_KEY_RPS="0.01")
    api_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    with (tmp_path / "api.log").open("wb") as log:
        api = subprocess.Popen(
            [sys.executable, "-c", "from api.cli import app; app()", "serve",
             "--workers", "2", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=api_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    workers = Workers(clean_env(**common), tmp_path)
    index_dirs: list[Path] = []
    try:
        metrics_ports = [free_port(), free_port()]
        for i in range(2):
            own = {"WORKER_METRICS_PORT": str(metrics_ports[i])}
            if not qdrant_url:  # one embedded index per worker process (see the docstring)
                index_dirs.append(tmp_path / f"index-{i}")
                own["QDRANT_PATH"] = str(index_dirs[-1])
            workers.env = clean_env(**common, **own)
            workers.start("--queues", "heavy")
        base_url = f"http://127.0.0.1:{port}"
        _wait_http(f"{base_url}/healthz", 120)
        _wait_api_processes(base_url, metrics_dir, 2, timeout=120)
        workers.wait_ready()
        yield Cluster(
            settings, base_url, workers, metrics_dir, index_dirs, credentials, limited,
            [f"http://127.0.0.1:{p}/metrics" for p in metrics_ports],
        )  # fmt: skip
    finally:
        workers.stop()
        api.terminate()
        try:
            api.wait(timeout=30)
        except subprocess.TimeoutExpired:
            api.kill()
        redis.Redis.from_url(REDIS_URL).delete(*queues.values())


def _serving_pids(metrics_dir: Path) -> set[str]:
    """Processes that counted a request (each writes its own counter file)."""
    return {p.stem.split("_")[-1] for p in metrics_dir.glob("counter_*.db")}


def _wait_api_processes(base_url: str, metrics_dir: Path, count: int, timeout: float) -> None:
    """Until ``count`` API processes answer: /healthz answers as soon as the first one
    has started, the second may still be importing."""
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(_serving_pids(metrics_dir)) < count:
            assert time.monotonic() < deadline, "the second API process never answered"
            # New connections at once: the kernel hands them to whichever process accepts.
            list(pool.map(lambda _: httpx.get(f"{base_url}/healthz", timeout=10), range(8)))
            time.sleep(0.2)


def _tenants(settings: Settings) -> tuple[dict[str, TenantCredentials], TenantCredentials]:
    db = Database.from_settings(settings)
    suffix = uuid.uuid4().hex[:6]
    made: dict[str, TenantCredentials] = {}
    try:
        with db.session() as session:
            for name in [*TOPICS, "limited"]:
                tenant = tenants.create_tenant(session, f"{name}-{suffix}")
                issued = tenants.issue_key(session, role=KeyRole.TENANT, tenant=tenant)
                scope = TenantScope(tenant.id, tenant.slug, api_key_id=issued.key.id)
                made[name] = TenantCredentials(scope, issued.plaintext, issued.key.id)
    finally:
        db.dispose()
    limited = made.pop("limited")
    return made, limited


def _upload_all(c: Cluster) -> dict[str, str]:
    """Upload every file at once (threads), so both API processes take some."""

    def upload(item: tuple[str, str, str]) -> tuple[str, str]:
        tenant, filename, text = item
        response = httpx.post(
            f"{c.base_url}/v1/documents",
            headers=c.credentials[tenant].headers,
            files=[("files", (filename, f"# {filename}\n\n{text}\n".encode(), "text/markdown"))],
            timeout=60,
        )
        assert response.status_code == 202, response.text
        return filename, response.json()["documents"][0]["id"]

    items = [(tenant, f, t) for tenant, docs in TOPICS.items() for f, t in docs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(upload, items))


def _wait_ready(db: Database, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            statuses = list(session.scalars(select(Document.status).where(Document.id.in_(ids))))
        if len(statuses) == len(ids) and all(s == DocumentStatus.READY for s in statuses):
            return
        if any(s == DocumentStatus.FAILED for s in statuses):
            break
        time.sleep(0.3)
    raise AssertionError(f"documents not ready: {statuses}")


def _metric_total(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _check_api_processes_share_state(c: Cluster, uploads: int) -> None:
    # Both uvicorn processes served requests and /metrics adds them up, whichever process
    # answers the scrape.
    assert len(_serving_pids(c.metrics_dir)) == 2
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}  # /metrics is not public (#20)
    text = httpx.get(f"{c.base_url}/metrics", headers=admin, timeout=10).text
    posted = _metric_total(
        text, "ragkb_http_requests_total", method="POST", route="/v1/documents", status="202"
    )
    assert posted == uploads
    # One key's bucket is shared by both processes: the burst is granted once, not twice.
    with ThreadPoolExecutor(max_workers=4) as pool:
        codes = list(
            pool.map(
                lambda _: (
                    httpx.get(
                        f"{c.base_url}/v1/me", headers=c.limited.headers, timeout=10
                    ).status_code
                ),
                range(KEY_BURST * 2),
            )
        )
    assert KEY_BURST <= codes.count(200) <= KEY_BURST + 1, codes
    assert codes.count(429) == len(codes) - codes.count(200)


def _wait_task_runs(workers: Workers, runs: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = sum(
            1
            for text in workers.log_text()
            for line in text.splitlines()
            if f"Task {TaskName.INGEST_DOCUMENT}[" in line and " succeeded in " in line
        )
        if done >= runs:
            return
        time.sleep(0.3)
    raise AssertionError(f"{done} of {runs} ingestion task runs finished")


def _check_each_document_ingested_once(c: Cluster, db: Database, ids: list[str]) -> None:
    with db.session() as session:
        chunk_counts = dict(
            session.execute(
                select(Document.id, Document.chunk_count).where(Document.id.in_(ids))
            ).all()
        )
        rows = dict(
            session.execute(
                select(Chunk.document_id, func.count())
                .where(Chunk.document_id.in_(ids))
                .group_by(Chunk.document_id)
            ).all()
        )
    assert rows == chunk_counts and all(n >= 1 for n in rows.values())
    # Worker logs: every task was delivered twice; exactly one run per document did the
    # work ('ready'), the other found it taken or done (None).
    pattern = re.compile(
        rf"Task {re.escape(TaskName.INGEST_DOCUMENT)}\[[^\]]+\] succeeded in [\d.]+s: (.+)$"
    )
    results_per_worker = [
        [m.group(1).strip() for m in map(pattern.search, text.splitlines()) if m]
        for text in c.workers.log_text()
    ]
    results = [r for per in results_per_worker for r in per]
    assert results.count("'ready'") == len(ids), results_per_worker
    assert results.count("None") == len(ids), results_per_worker
    assert all("'ready'" in per for per in results_per_worker), "one worker did all the work"
    # Index points: as many as chunks, each document's in exactly one place.
    for document_id, expected in chunk_counts.items():
        scope = _scope_of(c, db, document_id)
        counts = []
        index_dirs: list[Path | None] = [*c.worker_index_dirs] or [None]  # None: the server
        for index_dir in index_dirs:
            settings = c.settings.with_changes(index={"qdrant_path": index_dir})
            services = make_services(settings, db)
            try:
                counts.append(services.indexer.count(scope, document_id=document_id))
            finally:
                services.close()
        assert sorted(counts, reverse=True)[0] == expected and sum(counts) == expected, counts


def _scope_of(c: Cluster, db: Database, document_id: str) -> TenantScope:
    with db.session() as session:
        tenant_id = session.scalar(select(Document.tenant_id).where(Document.id == document_id))
    return next(cred.scope for cred in c.credentials.values() if cred.scope.tenant_id == tenant_id)


def _redeliver_every_task(c: Cluster, db: Database, ids: list[str]) -> None:
    queue = CeleryQueue(c.settings)
    try:
        with db.session() as session:
            pairs = list(
                session.execute(select(Document.tenant_id, Document.id).where(Document.id.in_(ids)))
            )
        for tenant_id, document_id in pairs:
            queue.submit(TaskName.INGEST_DOCUMENT, tenant_id, document_id)
    finally:
        queue.close()


def test_two_api_and_two_worker_processes_share_state_and_never_duplicate_work(
    tmp_path: Path, pg_url: str
) -> None:
    db = Database(pg_url)
    with qdrant_server(tmp_path) as qdrant_url, cluster(tmp_path, pg_url, qdrant_url) as c:
        started = time.monotonic()
        uploaded = _upload_all(c)
        ids = list(uploaded.values())
        _redeliver_every_task(c, db, ids)
        _wait_ready(db, ids, timeout=240)
        elapsed = time.monotonic() - started
        _check_api_processes_share_state(c, uploads=len(ids))
        _wait_task_runs(c.workers, 2 * len(ids), timeout=60)  # the redeliveries too
        # Each worker serves its own metrics: the ingest stages add up to one per document.
        scraped = [httpx.get(url, timeout=10).text for url in c.worker_metrics]
        for stage in ("parse", "chunk", "embed_and_index"):
            counts = [
                _metric_total(t, "ragkb_ingest_stage_duration_seconds_count", stage=stage)
                for t in scraped
            ]
            assert sum(counts) == len(ids) and all(counts), (stage, counts)
        c.workers.stop()  # the embedded indexes are free to open now
        try:
            _check_each_document_ingested_once(c, db, ids)
        finally:
            db.dispose()
        print(f"\n{len(ids)} documents through 2 API + 2 worker processes in {elapsed:.1f}s")


def test_questions_through_two_api_processes_with_a_shared_qdrant(
    tmp_path: Path, pg_url: str
) -> None:
    with qdrant_server(tmp_path) as qdrant_url:
        if qdrant_url is None:
            pytest.skip(
                "no Qdrant server: no PyPI/npm/Debian package ships the qdrant binary and "
                "there is no Docker here; set RAGKB_TEST_QDRANT_URL or put `qdrant` on PATH"
            )
        db = Database(pg_url)
        with cluster(tmp_path, pg_url, qdrant_url) as c:
            uploaded = _upload_all(c)
            _wait_ready(db, list(uploaded.values()), timeout=240)
            questions = {
                "tenant-one": ("How often is the northern pumping station inspected?", "pumps.md"),
                "tenant-two": ("How many electric vans does the delivery fleet have?", "fleet.md"),
            }
            for tenant, (question, expected) in questions.items():
                for _ in range(4):  # several requests: both API processes take some
                    response = httpx.post(
                        f"{c.base_url}/v1/search",
                        headers=c.credentials[tenant].headers,
                        json={"query": question, "top_k": 3, "rerank": False},
                        timeout=60,
                    )
                    assert response.status_code == 200, response.text
                    top = response.json()["hits"][0]
                    assert top["document_id"] == uploaded[expected], top
        db.dispose()
