"""Celery for real: a worker process (``ragkb worker``) takes tasks from the local Redis,
and a worker killed in the middle of a document gets it queued again and done by the next
worker, never stuck in progress, with nothing half-written searchable."""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from api.cli import app as cli_app
from core import tenants
from core.db import Database
from core.models import Chunk, DocumentStatus
from core.settings import Settings, get_settings
from core.tenancy import TenantScope
from ingest.documents import IN_FLIGHT, add_document
from tasks.names import TaskName
from tasks.queue import CeleryQueue
from tests.support.celery_workers import (
    celery_test_settings,
    load_document,
    redis_available,
    running_workers,
    wait_for_document,
    worker_env,
)
from tests.support.helpers import make_services

REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own: no collision with others
SENTENCE = (
    "The committee reviewed the annual maintenance schedule for the northern facilities "
    "and agreed that inspections should follow the revised safety checklist. "
)


pytestmark = pytest.mark.skipif(
    not redis_available(REDIS_URL), reason="Redis at 127.0.0.1:6379 is down"
)


@pytest.fixture
def celery_settings(tmp_path: Path, sqlite_template: Path) -> Iterator[Settings]:
    data_dir = tmp_path / "celery-data"  # its own data dir: its own embedded index
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "ragkb.db")
    settings = celery_test_settings(
        data_dir, REDIS_URL, ingest={"heartbeat_s": 0.5, "stale_after_s": 3.0}
    )
    yield settings
    redis.Redis.from_url(REDIS_URL).delete(
        settings.tasks.celery_queue, settings.tasks.celery_light_queue
    )


@pytest.fixture
def start_worker(celery_settings: Settings) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    env = worker_env(celery_settings, REDIS_URL)
    with running_workers(env, celery_settings.storage.data_dir) as workers:
        yield lambda: workers.start("--pool", "threads")


def _add(db: Database, settings: Settings, scope: TenantScope, name: str, data: bytes) -> str:
    with db.session() as session:
        return add_document(session, settings, scope, name, io.BytesIO(data)).document.id


def test_real_worker_processes_and_a_killed_worker_never_leaves_a_document_stuck(
    celery_settings: Settings,
    start_worker: Callable[[], subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = celery_settings
    db = Database.from_settings(settings)
    with db.session() as session:
        tenant = tenants.create_tenant(session, "celery-tenant")
        scope = TenantScope(tenant_id=tenant.id, slug=tenant.slug)
    queue = CeleryQueue(settings)
    worker = start_worker()

    small = _add(db, settings, scope, "notes.md", b"# Notes\n\n" + SENTENCE.encode() * 3)
    queue.submit(TaskName.INGEST_DOCUMENT, scope.tenant_id, small)
    done = wait_for_document(db, small, lambda d: d.status == DocumentStatus.READY, timeout=180)
    assert done.chunk_count >= 1

    # `ragkb ingest` in Celery mode hands the files to the workers and follows them.
    inbox = settings.storage.data_dir.parent / "inbox"
    inbox.mkdir()
    (inbox / "cli.md").write_text("# From the CLI\n\n" + SENTENCE)
    for name, value in {**worker_env(settings, REDIS_URL), "COLUMNS": "200"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["ingest", str(inbox), "--tenant", "celery-tenant"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "cli.md" in result.output and "1 ready" in result.output

    # A long document: the worker is killed while it is working on it.
    paragraphs = "\n\n".join(f"{SENTENCE * 3} Item {i}." for i in range(600)).encode()
    big = _add(db, settings, scope, "minutes.txt", paragraphs)
    queue.submit(TaskName.INGEST_DOCUMENT, scope.tenant_id, big)
    wait_for_document(db, big, lambda d: d.status in IN_FLIGHT, timeout=60)
    time.sleep(1.0)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert load_document(db, big).status in IN_FLIGHT  # nobody is working on it any more

    # The next worker finds it interrupted and queues it again (one attempt was used): done.
    second = start_worker()
    statuses = (DocumentStatus.QUEUED, *IN_FLIGHT)
    finished = wait_for_document(db, big, lambda d: d.status not in statuses, timeout=180)
    assert finished.status == DocumentStatus.READY, finished.error
    assert finished.attempts == 2
    with db.session() as session:  # the interrupted run's chunks were replaced, not added to
        assert session.query(Chunk).filter(Chunk.document_id == big).count() == (
            finished.chunk_count
        )
    second.terminate()
    second.wait(timeout=30)
    queue.close()

    services = make_services(settings, db)
    try:
        indexer = services.indexer
        assert indexer.count(scope, document_id=small) == done.chunk_count
        assert indexer.count(scope, document_id=big) == finished.chunk_count
    finally:
        services.close()
        db.dispose()
