"""Celery in production: ingestion is routed to the heavy queue and every other task of ours
(eval runs, housekeeping) to the light one, heavy workers prefetch one task, no task may
outlive the broker's visibility timeout, and the reaper runs as a periodic task that
several real workers schedule together without reaping any document twice."""

from __future__ import annotations

import io
import re
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select, update

from core import tenants
from core.db import Database
from core.models import Document, DocumentStatus, utcnow
from core.settings import Settings
from core.tenancy import TenantScope
from ingest.documents import add_document
from services.worker import make_worker_app
from tasks.celery_app import (
    make_celery,
    reap_queue,
    schedule_reaping_once,
    visibility_timeout_s,
    worker_argv,
)
from tasks.names import TaskName
from tests.support.celery_workers import (
    LOCAL_REDIS,
    celery_test_settings,
    redis_available,
    running_workers,
    worker_env,
)

REDIS_URL = f"{LOCAL_REDIS}/12"  # a database of its own


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return celery_test_settings(tmp_path, REDIS_URL, **overrides)


def test_tasks_are_routed_by_name_to_the_heavy_or_the_light_queue(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    app = make_celery(settings)
    router = app.amqp.router

    def queue_of(name: str) -> str:
        return str(router.route({}, name)["queue"].name)

    assert queue_of(TaskName.INGEST_DOCUMENT) == settings.tasks.celery_queue
    assert queue_of("ragkb.ingest.anything_new") == settings.tasks.celery_queue
    assert queue_of(TaskName.EVAL_RUN) == settings.tasks.celery_light_queue
    assert queue_of(TaskName.REAP_INTERRUPTED) == settings.tasks.celery_light_queue
    assert app.conf.task_default_queue == settings.tasks.celery_light_queue
    assert {q.name for q in app.conf.task_queues} == {
        settings.tasks.celery_queue,
        settings.tasks.celery_light_queue,
    }


def test_delivery_guarantees_and_time_limits(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ingest={"time_limit_s": 600})
    app = make_worker_app(settings)
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    # Redis hands an unacknowledged task to another worker after the visibility timeout:
    # it must be longer than any task may run, or a running task would run twice.
    assert conf.task_time_limit == 600
    assert visibility_timeout_s(settings) > conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] == visibility_timeout_s(settings)
    ingest = app.tasks[TaskName.INGEST_DOCUMENT]
    assert ingest.acks_late and ingest.reject_on_worker_lost
    assert ingest.time_limit == 600 and ingest.soft_time_limit == 540
    assert app.tasks[TaskName.REAP_INTERRUPTED].time_limit < 600

    # An eval run outlasts any one document: its own limit, and the visibility timeout
    # covers it too (else a long run would be handed to a second worker while it runs).
    settings = _settings(tmp_path, ingest={"time_limit_s": 600}, eval={"time_limit_s": 7200})
    app = make_worker_app(settings)
    run_eval = app.tasks[TaskName.EVAL_RUN]
    assert run_eval.time_limit == 7200 and run_eval.soft_time_limit == 6480
    assert visibility_timeout_s(settings) > 7200


def test_worker_arguments_per_queue_kind(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    heavy = worker_argv(settings, "heavy", concurrency=2)
    assert f"--queues={settings.tasks.celery_queue}" in heavy
    assert "--prefetch-multiplier=1" in heavy and "--concurrency=2" in heavy
    light = worker_argv(settings, "light", concurrency=4)
    assert f"--queues={settings.tasks.celery_light_queue}" in light
    assert "--prefetch-multiplier=4" in light
    both = worker_argv(settings)  # one worker for everything (small installs, embedded index)
    assert f"--queues={settings.tasks.celery_queue},{settings.tasks.celery_light_queue}" in both
    assert "--prefetch-multiplier=1" in both
    assert "--pool=threads" in both  # the embedded index: one process only may open it
    assert "--pool=prefork" in worker_argv(
        _settings(tmp_path, index={"qdrant_url": "http://qdrant:6333"}), "heavy"
    )
    with pytest.raises(ValueError):
        worker_argv(settings, "ingest")


def test_the_reaper_goes_to_the_index_owner(tmp_path: Path) -> None:
    embedded = _settings(tmp_path)
    assert reap_queue(embedded) == embedded.tasks.celery_queue
    server = _settings(tmp_path, index={"qdrant_url": "http://qdrant:6333"})
    assert reap_queue(server) == server.tasks.celery_light_queue


needs_redis = pytest.mark.skipif(
    not redis_available(REDIS_URL), reason="Redis at 127.0.0.1:6379 is down"
)


@needs_redis
def test_only_one_scheduler_sends_the_reaper_per_interval(tmp_path: Path) -> None:
    settings = _settings(tmp_path, ingest={"stale_after_s": 2.0})
    client = redis.Redis.from_url(REDIS_URL)
    apps = [make_celery(settings) for _ in range(3)]  # three workers' schedulers
    try:
        sent = [schedule_reaping_once(app, settings, client) for app in apps]
        assert sent.count(True) == 1
        assert client.llen(reap_queue(settings)) == 1
        time.sleep(1.1)  # the interval (stale_after / 2) has passed: the next one may send
        assert schedule_reaping_once(apps[1], settings, client)
    finally:
        client.delete(reap_queue(settings), f"ragkb:reaper:{reap_queue(settings)}")
        for app in apps:
            app.close()


def _stick(db: Database, settings: Settings, scope: TenantScope, count: int) -> list[str]:
    """Documents left mid-parse, on their last attempt, by a worker that died an hour ago
    (so the reaper fails them rather than queuing them again)."""
    ids = []
    with db.session() as session:
        for i in range(count):
            data = f"# Stuck {i}\n\nText of document {i}.".encode()
            ids.append(
                add_document(session, settings, scope, f"s{i}.md", io.BytesIO(data)).document.id
            )
    with db.session() as session:
        session.execute(
            update(Document)
            .where(Document.id.in_(ids))
            .values(
                status=DocumentStatus.PARSING,
                heartbeat_at=utcnow() - timedelta(hours=1),
                attempts=settings.ingest.max_attempts,
            )
        )
    return ids


@needs_redis
def test_two_real_workers_reap_each_stuck_document_exactly_once(
    tmp_path: Path, pg_url: str
) -> None:
    settings = _settings(tmp_path, storage={"database_url": pg_url}, ingest={"stale_after_s": 2.0})
    settings.ensure_dirs()
    db = Database.from_settings(settings)
    with db.session() as session:
        tenant = tenants.create_tenant(session, f"reap-{uuid.uuid4().hex[:8]}")
        scope = TenantScope(tenant_id=tenant.id, slug=tenant.slug)
    env = worker_env(settings, REDIS_URL)
    client = redis.Redis.from_url(REDIS_URL)
    try:
        with running_workers(env, tmp_path) as workers:
            workers.start("--queues", "heavy,light")
            workers.start("--queues", "heavy,light")
            workers.wait_ready()
            first_ready = datetime.now()  # Celery logs local wall-clock times
            stuck = _stick(db, settings, scope, 8)
            started = time.monotonic()
            deadline = started + 60
            while time.monotonic() < deadline:
                with db.session() as session:
                    statuses = set(
                        session.scalars(select(Document.status).where(Document.id.in_(stuck)))
                    )
                if statuses == {DocumentStatus.FAILED}:
                    break
                time.sleep(0.2)
            assert statuses == {DocumentStatus.FAILED}
            time.sleep(4.0)  # a few more intervals: both schedulers keep running
            window = (datetime.now() - first_ready).total_seconds()
            logs = workers.log_text()
    finally:
        client.delete(
            settings.tasks.celery_queue,
            settings.tasks.celery_light_queue,
            f"ragkb:reaper:{settings.tasks.celery_queue}",
        )
        db.dispose()
    with db.session() as session:
        errors = list(session.scalars(select(Document.error).where(Document.id.in_(stuck))))
    assert all(e and "interrupted during parsing" in e for e in errors)
    # Each stuck document was reaped by exactly one task run, in one of the two workers.
    runs = [
        line
        for text in logs
        for line in text.splitlines()
        if TaskName.REAP_INTERRUPTED in line and "succeeded" in line
    ]
    reaped = [i for line in runs for i in re.findall(r"'([0-9a-f-]{36})'", line)]
    assert sorted(i for i in reaped if i in set(stuck)) == sorted(stuck), runs
    # One run per interval (1 s) for the pair, not one per worker: the Redis lock.
    recent = [line for line in runs if _logged_at(line) >= first_ready]
    assert 1 <= len(recent) <= window / 1.0 + 2, (len(recent), window)


def _logged_at(line: str) -> datetime:
    stamp = re.search(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+", line)
    assert stamp, line
    return datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")
