"""Celery wiring for production ingestion: Redis broker and result backend, tasks
acknowledged late (a killed worker's task is delivered again), retried with exponential
backoff on transient errors, and bounded in time and memory per document.

``ragkb worker`` runs a worker; ``celery -A ingest.celery_app worker`` works too.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, signals

from core.db import Database
from core.settings import Settings, get_settings

log = logging.getLogger("ragkb.ingest")

TASK_NAME = "ragkb.ingest.process_document"
# A worker child process is replaced after it grows past this (KiB): parsing libraries
# can hold memory, and one large document must not weigh on every later one.
_MAX_MEMORY_PER_CHILD_KB = 2 * 1024 * 1024


def broker_url(settings: Settings) -> str:
    url = settings.broker_url or settings.redis_url
    if not url:
        raise RuntimeError("RAGKB_TASK_MODE=celery needs RAGKB_BROKER_URL or RAGKB_REDIS_URL")
    return url


def make_celery(settings: Settings) -> Celery:
    url = broker_url(settings)
    app = Celery("ragkb", broker=url, backend=settings.redis_url or url)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.celery_queue,
        task_time_limit=settings.ingest_time_limit_s,
        task_soft_time_limit=int(settings.ingest_time_limit_s * 0.9),
        worker_max_memory_per_child=_MAX_MEMORY_PER_CHILD_KB,
        result_expires=24 * 3600,
        # An unacknowledged task returns to the queue after this long (a killed worker).
        broker_transport_options={"visibility_timeout": settings.ingest_time_limit_s + 300},
        broker_connection_retry_on_startup=True,
    )
    _register(app, settings)
    return app


_worker_state: dict[str, Any] = {}
_state_lock = threading.Lock()


def _database(settings: Settings) -> Database:
    with _state_lock:
        if "db" not in _worker_state:
            _worker_state["db"] = Database.from_settings(settings)
        db: Database = _worker_state["db"]
        return db


def _register(app: Celery, settings: Settings) -> None:
    @app.task(
        name=TASK_NAME,
        bind=True,
        max_retries=settings.ingest_retries,
        acks_late=True,
        reject_on_worker_lost=True,
    )
    def process_document_task(self: Any, tenant_id: str, document_id: str) -> str | None:
        from ingest.errors import TransientError
        from ingest.pipeline import process_document

        db = _database(settings)
        final = self.request.retries >= settings.ingest_retries
        try:
            # A soft time limit fails the document inside (with a message); the hard limit
            # kills the child, and the reaper fails the document then.
            status = process_document(settings, db, tenant_id, document_id, final_attempt=final)
        except TransientError as exc:
            countdown = min(2 ** (self.request.retries + 1), 300)
            raise self.retry(exc=exc, countdown=countdown) from exc
        return status.value if status else None


def _start_reaper(settings: Settings) -> None:
    from ingest.pipeline import reap_interrupted

    stop = threading.Event()
    interval = max(1.0, settings.ingest_stale_after_s / 2)

    def loop() -> None:
        while True:
            try:
                reap_interrupted(settings, _database(settings))
            except Exception:
                log.exception("reaping interrupted documents failed")
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="ingest-reaper", daemon=True).start()


@signals.worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    _start_reaper(get_settings())


# For `celery -A ingest.celery_app worker`.
app = make_celery(get_settings()) if get_settings().task_mode == "celery" else None
