"""Where ingestion tasks run: the same task body (:func:`ingest.pipeline.process_document`)
either in a background thread pool inside this process (embedded mode, no broker) or in
Celery workers through Redis (production; see :mod:`ingest.celery_app`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from core.metrics import QUEUE_DEPTH
from core.settings import Settings
from ingest.errors import TransientError
from ingest.pipeline import process_document, queued_documents, reap_interrupted
from services.container import Services

log = logging.getLogger("ragkb.ingest")


class TaskQueue(Protocol):
    def submit(self, tenant_id: str, document_id: str) -> None:
        """Queue a document whose row is committed with status ``queued``."""

    def close(self) -> None: ...

    def health(self) -> dict[str, Any]:
        """For ``/readyz``: raises when tasks cannot be queued."""


class InProcessQueue:
    """A thread pool in this process. On start it queues again (or fails, past their
    attempts) documents interrupted by a previous process, and queues the ones still
    waiting; a reaper thread keeps doing the former."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = settings = services.settings
        self.db = services.db
        self._pool = ThreadPoolExecutor(
            max_workers=settings.ingest_workers, thread_name_prefix="ingest"
        )
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(
            target=self._reap_forever, name="ingest-reaper", daemon=True
        )

    def start(self) -> InProcessQueue:
        self._reaper.start()
        return self

    def _resume(self) -> None:
        """Documents left queued by a previous process (their tasks lived in its memory).
        Queuing one twice is harmless: only one run can claim it."""
        for tenant_id, document_id in queued_documents(self.db):
            self.submit(tenant_id, document_id)

    def submit(self, tenant_id: str, document_id: str) -> None:
        future = self._pool.submit(self._run, tenant_id, document_id)
        with self._lock:
            self._pending.add(future)
            QUEUE_DEPTH.labels(queue="ingest").set(len(self._pending))
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)
            QUEUE_DEPTH.labels(queue="ingest").set(len(self._pending))

    def _run(self, tenant_id: str, document_id: str) -> None:
        retries = self.settings.ingest_retries
        for attempt in range(retries + 1):
            if self._stop.is_set():
                return
            try:
                process_document(
                    self.services,
                    tenant_id,
                    document_id,
                    final_attempt=attempt == retries,
                )
                return
            except TransientError:
                time.sleep(min(2**attempt, 30))
            except Exception:  # never let one document kill the pool thread silently
                log.exception("ingestion task for %s crashed", document_id)
                return

    def _reap_forever(self) -> None:
        # In the background: the API starts (and reports /readyz) even when the database
        # is not reachable yet.
        interval = max(1.0, self.settings.ingest_stale_after_s / 2)
        resumed = False
        while True:
            try:
                requeued = reap_interrupted(self.services).requeued
                if not resumed:
                    self._resume()  # every queued document, the ones just requeued too
                    resumed = True
                else:
                    for tenant_id, document_id in requeued:
                        self.submit(tenant_id, document_id)
            except Exception:
                log.warning("reaping or resuming documents failed", exc_info=True)
            if self._stop.wait(interval):
                return

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every submitted document is done (tests, the CLI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                pending = list(self._pending)
            if not pending:
                return True
            for future in pending:
                with contextlib.suppress(Exception):  # its outcome is in the database
                    future.result(timeout=max(0.0, deadline - time.monotonic()))
        return False

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def health(self) -> dict[str, Any]:
        with self._lock:
            pending = len(self._pending)
        return {"mode": "inprocess", "pending": pending}


class CeleryQueue:
    """Sends tasks to Celery workers (``ragkb worker``) through the broker."""

    def __init__(self, settings: Settings) -> None:
        from ingest.celery_app import make_celery

        self.settings = settings
        self.app = make_celery(settings)

    def submit(self, tenant_id: str, document_id: str) -> None:
        from ingest.celery_app import TASK_NAME

        # Routed by name (ingest.celery_app.task_routes): the heavy queue.
        self.app.send_task(TASK_NAME, args=[tenant_id, document_id])

    def close(self) -> None:
        self.app.close()

    def health(self) -> dict[str, Any]:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
        return {
            "mode": "celery",
            "queue": self.settings.celery_queue,
            "light_queue": self.settings.celery_light_queue,
        }


def make_queue(services: Services) -> TaskQueue:
    if services.settings.task_mode == "celery":
        return CeleryQueue(services.settings)
    return InProcessQueue(services).start()
