"""Ingest files and folders from disk (``ragkb ingest``): the same add and process steps
as an upload, run here one document at a time (or followed while Celery workers run
them), reporting progress to a callback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.db import Database
from core.errors import RagkbError
from core.models import Document, DocumentStatus
from core.settings import Settings
from core.tenancy import TenantScope
from ingest.documents import add_document
from services.container import Services
from tasks.names import TaskName
from tasks.registry import registration


@dataclass
class FileResult:
    path: Path
    name: str
    document_id: str | None = None
    status: str = "rejected"
    version: int | None = None
    pages: int | None = None
    chunks: int = 0
    seconds: float = 0.0
    message: str = ""
    duplicate: bool = False


def expand(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """(file, name to store it under): files as given, folders recursively with names
    relative to the folder (so equal names in two subfolders are not versions)."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path)
                if child.is_file() and not any(p.startswith(".") for p in relative.parts):
                    found.append((child, relative.as_posix()))
        elif path.is_file():
            found.append((path, path.name))
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return found


def add_files(
    settings: Settings,
    db: Database,
    scope: TenantScope,
    files: list[tuple[Path, str]],
    tags: list[str],
    metadata: Mapping[str, Any] | None = None,
) -> tuple[list[FileResult], list[FileResult]]:
    """Store every file (each with ``metadata``, when given); returns (to process, already
    done or rejected)."""
    todo: list[FileResult] = []
    done: list[FileResult] = []
    for path, name in files:
        result = FileResult(path=path, name=name)
        try:
            with db.session() as session, path.open("rb") as source:
                added = add_document(
                    session, settings, scope, name, source, tags=tags, metadata=metadata
                )
                document = added.document
                result.document_id = document.id
                result.version = document.version
                result.status = document.status.value
                result.duplicate = not added.created
                result.pages, result.chunks = document.page_count, document.chunk_count
        except RagkbError as exc:
            result.message = exc.message
            done.append(result)
            continue
        (todo if added.needs_processing else done).append(result)
    return todo, done


def process(
    services: Services,
    scope: TenantScope,
    result: FileResult,
    on_progress: Callable[[float, str], None],
    poll_s: float = 0.2,
) -> FileResult:
    """Process one added document here, calling ``on_progress(percent, stage)`` as it
    moves; fills in the result's status, pages, chunks, time and message."""
    assert result.document_id is not None
    db = services.db
    started = time.perf_counter()
    finished = threading.Event()
    # The same body, with the same retries, as the queue would run.
    ingestion = registration(TaskName.INGEST_DOCUMENT)

    def run() -> None:
        try:
            ingestion.run(services, services.settings, scope.tenant_id, result.document_id or "")
        finally:
            finished.set()

    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(run)
        while not finished.wait(poll_s):
            _report(db, result.document_id, on_progress)
        future.result()
    return _finish(db, result, on_progress, started)


def wait_for(
    db: Database,
    result: FileResult,
    on_progress: Callable[[float, str], None],
    poll_s: float = 0.5,
) -> FileResult:
    """Follow a document that workers elsewhere (Celery) process, until it is done."""
    assert result.document_id is not None
    started = time.perf_counter()
    while _report(db, result.document_id, on_progress) not in _DONE:
        time.sleep(poll_s)
    return _finish(db, result, on_progress, started)


_DONE = (DocumentStatus.READY, DocumentStatus.FAILED, None)


def _finish(
    db: Database,
    result: FileResult,
    on_progress: Callable[[float, str], None],
    started: float,
) -> FileResult:
    assert result.document_id is not None
    _report(db, result.document_id, on_progress)
    with db.session() as session:
        document = session.get(Document, result.document_id)
        if document is None:
            result.status, result.message = "deleted", "deleted while being processed"
        else:
            result.status = document.status.value
            result.pages, result.chunks = document.page_count, document.chunk_count
            result.message = document.error or ""
    result.seconds = time.perf_counter() - started
    return result


def _report(
    db: Database, document_id: str, on_progress: Callable[[float, str], None]
) -> DocumentStatus | None:
    with db.session() as session:
        document = session.get(Document, document_id)
        if document is None:
            return None
        status = document.status
        percent = 100.0 if status == DocumentStatus.READY else 100.0 * document.progress
        on_progress(percent, status.value)
        return status
