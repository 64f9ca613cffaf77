"""Real ``ragkb worker`` processes for tests: started with an environment of their own
(nothing inherited from ``RAGKB_*``), logging to a file, stopped at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from core.db import Database
from core.models import Document
from core.settings import Settings
from tests.support.helpers import REPO_ROOT, make_settings

LOCAL_REDIS = "redis://127.0.0.1:6379"


def redis_available(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def clean_env(**ragkb: str) -> dict[str, str]:
    """This process's environment without ``RAGKB_*``, plus ``ragkb`` (names given without
    the prefix, e.g. ``TASK_MODE="celery"``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGKB_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DO_NOT_TRACK="1",
        SCARF_NO_ANALYTICS="1",
        RAGKB_LOG_JSON="false",
    )
    env.update({f"RAGKB_{name}": value for name, value in ragkb.items()})
    return env


def celery_test_settings(data_dir: Path, redis_url: str, **overrides: Any) -> Settings:
    """Celery-mode settings on heavy and light queues of this test's own, so that no other
    test's worker takes its tasks (a test that sends tasks deletes its queues at the end)."""
    return make_settings(
        data_dir,
        storage={"redis_url": redis_url},
        tasks={
            "mode": "celery",
            "celery_queue": f"heavy-{uuid.uuid4().hex[:8]}",
            "celery_light_queue": f"light-{uuid.uuid4().hex[:8]}",
        },
    ).with_changes(**overrides)


def worker_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment of a worker that shares ``settings``' data, database and queue."""
    return clean_env(
        DATA_DIR=str(settings.storage.data_dir),
        DATABASE_URL=settings.sqlalchemy_url,
        TASK_MODE="celery",
        REDIS_URL=redis_url,
        CELERY_QUEUE=settings.tasks.celery_queue,
        CELERY_LIGHT_QUEUE=settings.tasks.celery_light_queue,
        INGEST_HEARTBEAT_S=str(settings.ingest.heartbeat_s),
        INGEST_STALE_AFTER_S=str(settings.ingest.stale_after_s),
    )


def load_document(db: Database, document_id: str) -> Document:
    with db.session() as session:
        document = session.get(Document, document_id)
        assert document is not None
        return document


def wait_for_document(
    db: Database, document_id: str, until: Callable[[Document], bool], timeout: float
) -> Document:
    """The document once ``until`` holds for it (polled), or an AssertionError at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = load_document(db, document_id)
        if until(document):
            return document
        time.sleep(0.05)
    raise AssertionError(f"document {document_id} is {document.status} after {timeout}s")


class Workers:
    """Worker processes started by one test; each one's log is a file beside the data."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log_path = self.log_dir / f"worker-{len(self.processes)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", "from api.cli import app; app()", "worker", *args],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        self.logs.append(log_path)
        return process

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every worker logged Celery's ``ready.`` line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(" ready." in p.read_text(errors="replace") for p in self.logs):
                return
            for process, path in zip(self.processes, self.logs, strict=True):
                if process.poll() is not None:
                    raise AssertionError(f"worker exited:\n{path.read_text(errors='replace')}")
            time.sleep(0.2)
        raise AssertionError("workers did not become ready in time")

    def log_text(self) -> list[str]:
        return [p.read_text(errors="replace") for p in self.logs]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def running_workers(env: dict[str, str], log_dir: Path) -> Iterator[Workers]:
    workers = Workers(env, log_dir)
    try:
        yield workers
    finally:
        workers.stop()
