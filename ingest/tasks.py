"""Ingestion's task bodies, registered by name with the task layer (:mod:`tasks.registry`):
processing one document (:func:`ingest.pipeline.process_document`), re-indexing one whose
metadata changed (:func:`ingest.documents.reindex_document`) and reaping interrupted
ones (:func:`ingest.pipeline.reap_interrupted`). Where they run (a thread of this process
or a Celery worker) is the task layer's business; each gets the process's ``Services``.
"""

from __future__ import annotations

from core.settings import Settings
from ingest.documents import reindex_document
from ingest.errors import TransientError
from ingest.pipeline import process_document, queued_documents, reap_interrupted
from services.container import Services
from tasks.names import TaskName
from tasks.registry import Retry, task


def _retries(settings: Settings) -> int:
    return settings.ingest.retries


@task(TaskName.INGEST_DOCUMENT, retry=Retry(on=(TransientError,), times=_retries))
def process_document_task(
    services: Services, tenant_id: str, document_id: str, *, final_attempt: bool
) -> str | None:
    """A queued document processed; returns its final status (None: not ours to process)."""
    status = process_document(services, tenant_id, document_id, final_attempt=final_attempt)
    return status.value if status else None


@task(TaskName.REINDEX_DOCUMENT)
def reindex_document_task(services: Services, tenant_id: str, document_id: str) -> int | None:
    """A ready document's chunks indexed again with its current contextual header; returns
    how many (None: the document is gone or not ready)."""
    return reindex_document(services, tenant_id, document_id)


@task(TaskName.REAP_INTERRUPTED)
def reap_interrupted_task(services: Services, resume: bool = False) -> dict[str, list[str]]:
    """Interrupted documents queued again (or failed); returns what was done. With
    ``resume`` (an in-process queue's first pass) every queued document is submitted, the
    requeued ones included: their tasks lived in a previous process's memory."""
    queue = services.task_queue
    if queue is None:
        raise RuntimeError("reaping needs the process's task queue to requeue documents")
    reaped = reap_interrupted(services)
    todo = queued_documents(services.db) if resume else reaped.requeued
    for tenant_id, document_id in todo:
        queue.submit(TaskName.INGEST_DOCUMENT, tenant_id, document_id)
    return {"requeued": [d for _, d in reaped.requeued], "failed": reaped.failed}
