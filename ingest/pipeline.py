"""The one task body: move a document from ``queued`` through ``parsing → chunking →
embedding → indexing`` to ``ready``, or to ``failed`` with a message a person can act on.

Both queues (in-process threads and Celery workers) call :func:`process_document` with
their process's ``Services`` (database, index writer, settings).
It is idempotent: a document is claimed with a conditional UPDATE (so two workers never
process it at once), chunk rows are replaced, and index points are keyed by chunk id. While
it works, a heartbeat thread stamps ``heartbeat_at``; :func:`reap_interrupted` queues
again (or, past ``ingest_max_attempts``, fails) documents whose heartbeat stopped (a killed
worker), so none stays in progress forever.
Nothing half-written stays searchable: a failure removes the document's chunks and points.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.db import Database
from core.errors import without_paths
from core.metrics import INGEST_FAILURES, INGEST_STAGE_LATENCY
from core.models import Chunk, Document, DocumentStatus, Tenant, utcnow
from core.settings import Settings
from core.tenancy import TenantScope, scoped, scoped_update
from ingest.chunking import ChunkingOptions, chunk_elements
from ingest.documents import IN_FLIGHT, remove_document
from ingest.errors import DocumentRejected, TransientError
from ingest.filetypes import detect
from ingest.metadata import extract_metadata, file_title
from ingest.parsing import parse_file
from ingest.tokens import get_tokenizer
from retrieval.indexer import ChunkIndexer, EmbeddingModelChanged
from services.container import Services

log = logging.getLogger("ragkb.ingest")

# Share of the progress bar each stage ends at.
_PARSED, _CHUNKED = 0.3, 0.4
# When the document being processed in this thread must be done (monotonic clock) and the
# limit in seconds. Celery enforces its own time limits by killing the task; threads of the
# in-process queue cannot be killed, so the pipeline checks this between stages and between
# embedding batches and fails the document past it.
_deadline: ContextVar[tuple[float, int] | None] = ContextVar("ingest_deadline", default=None)


def process_document(
    services: Services, tenant_id: str, document_id: str, *, final_attempt: bool
) -> DocumentStatus | None:
    """Process one document; returns its final status (None: not ours to process, e.g.
    deleted, already done, or being processed elsewhere). Raises ``TransientError`` when
    a retry may succeed and this is not the final attempt."""
    settings, db = services.settings, services.db
    scope = _scope(db, tenant_id)
    if scope is None or not _claim(settings, db, scope, document_id):
        return None
    limit = settings.ingest.time_limit_s
    token = _deadline.set((time.monotonic() + limit, limit))
    with _heartbeat(settings, db, document_id):
        try:
            _run(services, scope, document_id)
        except (DocumentRejected, EmbeddingModelChanged) as exc:
            _fail(services, scope, document_id, str(exc))
            return DocumentStatus.FAILED
        except (TransientError, OperationalError) as exc:
            if final_attempt:
                log.warning("document %s: giving up after retries: %s", document_id, exc)
                _fail(services, scope, document_id, _GAVE_UP)
                return DocumentStatus.FAILED
            log.info("document %s: retrying after a temporary error: %s", document_id, exc)
            _requeue(db, document_id, _RETRYING)
            raise TransientError(str(exc)) from exc
        except Exception as exc:  # a bug or an unexpected library error: fail this one only
            log.exception("ingestion of %s failed", document_id)
            _fail(services, scope, document_id, _unexpected(exc, settings))
            return DocumentStatus.FAILED
        finally:
            _deadline.reset(token)
    return DocumentStatus.READY


# What a tenant reads in a document's error: never the exception's own text, which may name
# the database, the index or the stored file's path.
_RETRYING = "retrying after a temporary error (database or index)"
_GAVE_UP = "gave up after retries: a temporary error (database or index) persisted"


def _check_deadline() -> None:
    """Fail the document (``DocumentRejected``) once its time limit has passed."""
    bound = _deadline.get()
    if bound is not None and time.monotonic() > bound[0]:
        raise DocumentRejected(f"processing took longer than the limit of {bound[1]} s")


def _unexpected(exc: Exception, settings: Settings) -> str:
    # Celery's soft time limit arrives as an exception inside the task (matched by name:
    # this module does not depend on Celery).
    if type(exc).__name__ == "SoftTimeLimitExceeded":
        return f"processing took longer than the limit of {settings.ingest.time_limit_s} s"
    if isinstance(exc, MemoryError):
        return "processing needed more memory than is available"
    # The exception (with its stack) is in the server log; the tenant reads a plain message.
    return "an internal error stopped the processing of this document; try again later"


def _scope(db: Database, tenant_id: str) -> TenantScope | None:
    with db.session() as session:
        tenant = session.get(Tenant, tenant_id)
        return TenantScope.of(tenant) if tenant else None


def _claim(settings: Settings, db: Database, scope: TenantScope, document_id: str) -> bool:
    """Take the document: queued, or in progress with a stale heartbeat (its worker died)."""
    stale = utcnow() - timedelta(seconds=settings.ingest.stale_after_s)
    with db.session() as session:
        result = session.execute(
            scoped_update(Document, scope)
            .where(
                Document.id == document_id,
                or_(
                    Document.status == DocumentStatus.QUEUED,
                    and_(
                        Document.status.in_(IN_FLIGHT),
                        or_(Document.heartbeat_at.is_(None), Document.heartbeat_at < stale),
                    ),
                ),
            )
            .values(
                status=DocumentStatus.PARSING,
                progress=0.0,
                error=None,
                heartbeat_at=utcnow(),
                attempts=Document.attempts + 1,
            )
        )
        return bool(getattr(result, "rowcount", 0))


@contextmanager
def _heartbeat(settings: Settings, db: Database, document_id: str) -> Iterator[None]:
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(settings.ingest.heartbeat_s):
            try:
                with db.session() as session:
                    session.execute(
                        update(Document)
                        .where(Document.id == document_id, Document.status.in_(IN_FLIGHT))
                        .values(heartbeat_at=utcnow())
                    )
            except Exception:  # a missed beat is harmless; the next one tries again
                log.debug("heartbeat for %s failed", document_id, exc_info=True)

    thread = threading.Thread(target=beat, name=f"heartbeat-{document_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


class _Deleted(Exception):
    """The document was deleted while it was being processed."""


def _set_stage(
    db: Database, document_id: str, status: DocumentStatus, progress: float, **values: object
) -> None:
    _check_deadline()
    with db.session() as session:
        result = session.execute(
            update(Document)
            .where(Document.id == document_id, Document.status.in_(IN_FLIGHT))
            .values(status=status, progress=progress, heartbeat_at=utcnow(), **values)
        )
        if not getattr(result, "rowcount", 0):
            raise _Deleted(document_id)


def _run(services: Services, scope: TenantScope, document_id: str) -> None:
    settings, db = services.settings, services.db
    with db.session() as session:
        document = session.get(Document, document_id)
        if document is None:
            return
        filename, stored = document.filename, settings.files_dir / document.storage_path
        version = document.version
    try:
        chunk_ids = _parse_and_chunk(services, scope, document_id, version, filename, stored)
        _index(services, scope, document_id, chunk_ids)
    except _Deleted:
        log.info("document %s was deleted while being processed", document_id)
        with db.session() as session:
            # Never ready: its statistics were rolled back with the READY update.
            services.indexer.delete(scope, session, document_id, counted=False)
        return
    try:
        _replace_older_versions(services, scope, document_id)
    except Exception:  # the new version is ready either way; the old one goes next time
        log.exception("removing older versions of %s failed", document_id)


def _parse_and_chunk(
    services: Services,
    scope: TenantScope,
    document_id: str,
    version: int,
    filename: str,
    stored: Path,
) -> list[str]:
    settings, db = services.settings, services.db
    if not stored.exists():
        raise DocumentRejected("the stored file is missing; upload it again")
    detected = detect(stored, filename)
    with INGEST_STAGE_LATENCY.labels(stage="parse").time():
        parsed = parse_file(stored, detected, filename, settings, document_id=document_id)
    facts = extract_metadata(
        parsed.elements,
        parsed.context,
        filename,
        detected.name,
        file_title(stored, detected.name),
    )
    _set_stage(
        db,
        document_id,
        DocumentStatus.CHUNKING,
        _PARSED,
        page_count=parsed.page_count,
        context={**parsed.context, **facts.as_context()},
        title=facts.title,
        **facts.columns(),
    )
    options = ChunkingOptions.from_settings(settings)
    with INGEST_STAGE_LATENCY.labels(stage="chunk").time():
        drafts = chunk_elements(
            parsed.elements, get_tokenizer(settings.models.embedding_model), options
        )
    if not drafts:
        raise DocumentRejected("no text could be extracted from this file")
    with db.session() as session:
        # Idempotent: a retried task replaces what an interrupted one wrote, index points
        # included, and its chunks get the same ids (derived from document and position).
        leftover = session.scalar(select(Chunk.id).where(Chunk.document_id == document_id).limit(1))
        if leftover is not None:  # an interrupted run's: never ready, never counted
            services.indexer.delete(scope, session, document_id, counted=False)
            session.execute(delete(Chunk).where(Chunk.document_id == document_id))
        rows = [
            Chunk(
                id=chunk_id(document_id, version, d.ordinal),
                tenant_id=scope.tenant_id,
                document_id=document_id,
                version=version,
                ordinal=d.ordinal,
                text=d.text,
                page_start=d.page_start,
                page_end=d.page_end,
                heading_path=d.heading_path,
                element_types=d.element_types,
                char_start=d.char_start,
                char_end=d.char_end,
                token_count=d.token_count,
                extra=d.extra,
            )
            for d in drafts
        ]
        session.add_all(rows)
        result = session.execute(
            update(Document)
            .where(Document.id == document_id, Document.status.in_(IN_FLIGHT))
            .values(
                status=DocumentStatus.EMBEDDING,
                progress=_CHUNKED,
                chunk_count=len(rows),
                heartbeat_at=utcnow(),
            )
        )
        if not getattr(result, "rowcount", 0):
            raise _Deleted(document_id)
        session.flush()
        return [r.id for r in rows]


def chunk_id(document_id: str, version: int, ordinal: int) -> str:
    """The same chunk of the same document always gets the same id (and index point)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragkb:chunk:{document_id}:{version}:{ordinal}"))


def _index(services: Services, scope: TenantScope, document_id: str, chunk_ids: list[str]) -> None:
    report = _progress_reporter(services.db, document_id)
    with services.db.session() as session:
        chunks = list(
            session.scalars(
                scoped(select(Chunk), Chunk, scope)
                .where(Chunk.id.in_(chunk_ids))
                .order_by(Chunk.ordinal)
            )
        )
        try:
            with INGEST_STAGE_LATENCY.labels(stage="embed_and_index").time():
                services.indexer.index(scope, session, chunks, report)
        except (OSError, ConnectionError, TimeoutError) as exc:
            raise TransientError(f"the index is unreachable: {exc}") from exc
        # Ready in the same transaction as the index writer's statistics.
        result = session.execute(
            update(Document)
            .where(Document.id == document_id, Document.status.in_(IN_FLIGHT))
            .values(status=DocumentStatus.READY, progress=1.0, error=None, heartbeat_at=None)
        )
        if not getattr(result, "rowcount", 0):
            session.rollback()
            raise _Deleted(document_id)


def _progress_reporter(db: Database, document_id: str) -> Callable[[float], None]:
    def report(fraction: float) -> None:
        if fraction >= 1.0:
            return  # the caller's transaction is writing now; READY follows at once
        status = DocumentStatus.INDEXING if fraction >= 0.9 else DocumentStatus.EMBEDDING
        try:
            _set_stage(db, document_id, status, _CHUNKED + (1 - _CHUNKED) * fraction)
        except (_Deleted, DocumentRejected):
            raise
        except Exception:  # progress is informative; never fail a document over it
            log.debug("progress update for %s failed", document_id, exc_info=True)

    return report


def _replace_older_versions(services: Services, scope: TenantScope, document_id: str) -> None:
    """The new version is fully indexed: older versions of the same file disappear now."""
    with services.db.session() as session:
        document = session.get(Document, document_id)
        if document is None:
            return
        others = list(
            session.scalars(
                scoped(select(Document), Document, scope).where(
                    Document.filename == document.filename, Document.id != document.id
                )
            )
        )
        newer_ready = [
            d for d in others if d.version > document.version and d.status == DocumentStatus.READY
        ]
        if newer_ready:  # a later version finished first: this one is already outdated
            remove_document(session, services, scope, document)
            return
        for old in others:
            if old.version < document.version:
                remove_document(session, services, scope, old)


def _fail(services: Services, scope: TenantScope, document_id: str, message: str) -> None:
    log.warning("document %s failed: %s", document_id, message)
    with services.db.session() as session:
        document = session.get(Document, document_id)
        if document is None:
            return
        INGEST_FAILURES.labels(stage=document.status.value).inc()
        _discard_partial(services.indexer, session, scope, document)
        document.status = DocumentStatus.FAILED
        document.error = without_paths(message)
        document.heartbeat_at = None


def _discard_partial(
    indexer: ChunkIndexer, session: Session, scope: TenantScope, document: Document
) -> None:
    """Remove whatever an unfinished run wrote (nothing half-written stays searchable)."""
    if document.chunk_count or document.status in (
        DocumentStatus.EMBEDDING,
        DocumentStatus.INDEXING,
    ):
        try:
            with session.begin_nested():
                # Unfinished: its statistics were never committed (see ChunkIndexer.delete).
                indexer.delete(scope, session, document.id, counted=False)
        except Exception:
            # The index is unreachable: still fail the document (never leave it in
            # progress). Its chunk rows go below; search only returns points whose chunk
            # rows exist, and a rebuild from the chunks table drops the rest.
            log.exception("could not remove the points of %s from the index", document.id)
    session.execute(delete(Chunk).where(Chunk.document_id == document.id))
    document.chunk_count = 0


def _requeue(db: Database, document_id: str, message: str) -> None:
    with db.session() as session:
        session.execute(
            update(Document)
            .where(Document.id == document_id)
            .values(status=DocumentStatus.QUEUED, error=message, heartbeat_at=None)
        )


@dataclass(frozen=True, slots=True)
class Reaped:
    """What one reaper pass did with interrupted documents."""

    requeued: list[tuple[str, str]]  # (tenant id, document id): submit them again
    failed: list[str]


def reap_interrupted(services: Services) -> Reaped:
    """Documents whose worker stopped mid-way (heartbeat older than
    ``ingest_stale_after_s``): their partial chunks are removed, then each is queued again
    while it has been started fewer than ``ingest_max_attempts`` times, else failed with a
    message. The caller submits the requeued ones."""
    settings = services.settings
    stale = utcnow() - timedelta(seconds=settings.ingest.stale_after_s)
    with services.db.session() as session:
        candidates = list(
            session.scalars(
                select(Document)
                .where(
                    Document.status.in_(IN_FLIGHT),
                    or_(
                        Document.heartbeat_at < stale,
                        and_(Document.heartbeat_at.is_(None), Document.updated_at < stale),
                    ),
                )
                # Several reapers (workers) at once: each row goes to one of them, and a
                # worker's claim of a stale row waits for the reaper's verdict (PostgreSQL;
                # SQLite serialises writers anyway).
                .with_for_update(skip_locked=True)
            )
        )
        requeued: list[tuple[str, str]] = []
        failed: list[str] = []
        for document in candidates:
            scope = TenantScope(tenant_id=document.tenant_id, slug=document.tenant_id)
            stage = document.status.value
            INGEST_FAILURES.labels(stage=stage).inc()
            _discard_partial(services.indexer, session, scope, document)
            document.heartbeat_at = None
            document.progress = 0.0
            if document.attempts < settings.ingest.max_attempts:
                document.status = DocumentStatus.QUEUED
                document.error = None
                requeued.append((document.tenant_id, document.id))
                continue
            document.status = DocumentStatus.FAILED
            tries = "once" if document.attempts == 1 else f"{document.attempts} times"
            document.error = (
                f"processing was interrupted during {stage} (the worker stopped), {tries}; "
                "upload the same file again to retry"
            )
            failed.append(document.id)
    if requeued:
        names = ", ".join(d for _, d in requeued)
        log.warning("queued %d interrupted document(s) again: %s", len(requeued), names)
    if failed:
        log.warning("failed %d interrupted document(s): %s", len(failed), ", ".join(failed))
    return Reaped(requeued=requeued, failed=failed)


def queued_documents(db: Database) -> list[tuple[str, str]]:
    """(tenant id, document id) of every queued document, oldest first."""
    with db.session() as session:
        rows = session.execute(
            select(Document.tenant_id, Document.id)
            .where(Document.status == DocumentStatus.QUEUED)
            .order_by(Document.created_at)
        )
        return [(t, d) for t, d in rows]
