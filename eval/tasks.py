"""The eval run task body (:func:`eval.runs.execute`), registered by name with the task
layer (:mod:`tasks.registry`). In the embedded mode it runs on the in-process queue's light
thread (the run must use the process's own index, which no second process may open); in
production it is a Celery task on the light queue (``RAGKB_CELERY_LIGHT_QUEUE``).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from core.db import Database
from core.models import EvalRun, EvalRunStatus, utcnow
from eval.runs import execute
from services.container import Services
from tasks.names import TaskName
from tasks.registry import task

log = logging.getLogger("ragkb.eval")


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


def _recover(services: Services) -> int:
    return fail_interrupted(services.db)


@task(TaskName.EVAL_RUN, recover=_recover)
def run_eval_task(services: Services, run_id: str) -> str:
    """A queued run executed; a failure is stored on the run (and raised)."""
    results: dict[str, Any] = execute(services, run_id)
    return str(results.get("run_id", run_id))
