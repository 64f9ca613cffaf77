"""Where an API-started eval run executes: the one body (:func:`eval.runs.execute`) either
on a single background thread of the API process (embedded mode: the run must use the
process's own index, which no second process may open) or as the Celery task
``ragkb.eval.run`` on the light queue (``RAGKB_CELERY_LIGHT_QUEUE``), which the worker loads
through the Celery app's ``include``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from celery import shared_task
from sqlalchemy import select

from core.db import Database
from core.models import EvalRun, EvalRunStatus, utcnow
from core.settings import Settings, get_settings
from eval.runs import execute

log = logging.getLogger("ragkb.eval")

TASK_NAME = "ragkb.eval.run"


class EvalQueue(Protocol):
    def submit(self, run_id: str) -> None:
        """Queue a run whose row is committed with status ``queued``."""

    def close(self) -> None: ...


class InProcessEvalQueue:
    """One worker thread: runs go one after the other, beside (not instead of) ingestion."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eval")
        self._pending: set[Future[None]] = set()
        self._lock = threading.Lock()

    def submit(self, run_id: str) -> None:
        future = self._pool.submit(self._run, run_id)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _run(self, run_id: str) -> None:
        try:
            execute(self.settings, self.db, run_id)
        except Exception:  # stored on the run by execute(); the thread lives on
            log.warning("eval run %s failed", run_id)

    def wait_idle(self, timeout: float = 120.0) -> bool:
        """Block until every submitted run is done (tests)."""
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            try:
                future.result(timeout=timeout)
            except TimeoutError:
                return False
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class CeleryEvalQueue:
    def __init__(self, settings: Settings) -> None:
        from ingest.celery_app import make_celery

        self.settings = settings
        self.app = make_celery(settings)

    def submit(self, run_id: str) -> None:
        self.app.send_task(TASK_NAME, args=[run_id], queue=self.settings.celery_light_queue)

    def close(self) -> None:
        self.app.close()


def make_eval_queue(settings: Settings, db: Database) -> EvalQueue:
    if settings.task_mode == "celery":
        return CeleryEvalQueue(settings)
    fail_interrupted(db)
    return InProcessEvalQueue(settings, db)


def fail_interrupted(db: Database) -> int:
    """In-process runs live in the API's memory: the ones a previous process left queued or
    running will never finish. Mark them failed (best effort: the database may be down)."""
    try:
        with db.session() as session:
            stale = list(
                session.scalars(
                    select(EvalRun).where(
                        EvalRun.status.in_([EvalRunStatus.QUEUED, EvalRunStatus.RUNNING])
                    )
                )
            )
            for run in stale:
                run.status = EvalRunStatus.FAILED
                run.error = "interrupted: the process running it stopped; start it again"
                run.finished_at = utcnow()
            return len(stale)
    except Exception:
        log.warning("could not check for interrupted eval runs", exc_info=True)
        return 0


_worker_db: dict[str, Database] = {}
_worker_lock = threading.Lock()


@shared_task(name=TASK_NAME, acks_late=True)
def run_eval_task(run_id: str) -> str:
    """The Celery task: the worker's settings and one database per worker process."""
    settings = get_settings()
    with _worker_lock:
        db = _worker_db.setdefault("db", Database.from_settings(settings))
    results: dict[str, Any] = execute(settings, db, run_id)
    return str(results.get("run_id", run_id))
