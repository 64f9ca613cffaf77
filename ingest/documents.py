"""Documents as the API and CLI see them: add an upload (deduplicated, versioned), list,
get and delete, always within a ``TenantScope``.

A new version of a file (same filename, different bytes) is a new ``Document`` row with
``version`` = previous + 1; the older row stays searchable until the new one is ready
(:mod:`ingest.pipeline` then removes it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Chunk, Document, DocumentStatus
from core.settings import Settings
from core.tenancy import TenantScope, get_owned, scoped
from ingest import storage
from ingest.filetypes import detect

IN_FLIGHT = (
    DocumentStatus.PARSING,
    DocumentStatus.CHUNKING,
    DocumentStatus.EMBEDDING,
    DocumentStatus.INDEXING,
)


@dataclass(frozen=True, slots=True)
class AddResult:
    document: Document
    created: bool  # False: byte-identical to a document the tenant already has
    needs_processing: bool  # True: the caller must queue it (after committing)


def add_document(
    session: Session,
    settings: Settings,
    scope: TenantScope,
    filename: str,
    source: BinaryIO,
    *,
    tags: Sequence[str] = (),
    title: str | None = None,
) -> AddResult:
    """Store an upload and create its ``Document`` (queued); raises 413/415/422.
    ``filename`` identifies the file across versions (the CLI passes relative paths)."""
    filename = filename.strip()[:1024] or "upload"
    spooled = storage.spool(settings.files_dir, scope, source, settings.max_upload_bytes, filename)
    try:
        existing = session.scalars(
            scoped(select(Document), Document, scope)
            .where(Document.sha256 == spooled.sha256, Document.status != DocumentStatus.DELETING)
            .order_by(Document.version.desc())
        ).first()
        if existing is not None:
            storage.discard(spooled)
            # A failed document gets another chance when the same bytes come again.
            retry = existing.status == DocumentStatus.FAILED
            if retry:
                existing.status = DocumentStatus.QUEUED
                existing.error = None
                existing.progress = 0.0
            return AddResult(existing, created=False, needs_processing=retry)
        detected = detect(spooled.path, filename)
    except BaseException:
        storage.discard(spooled)
        raise
    path = storage.commit(settings.files_dir, scope, spooled)
    previous = session.scalar(
        scoped(select(func.max(Document.version)), Document, scope).where(
            Document.filename == filename
        )
    )
    document = Document(
        tenant_id=scope.tenant_id,
        filename=filename,
        title=title,
        media_type=detected.media_type,
        sha256=spooled.sha256,
        size_bytes=spooled.size,
        storage_path=storage.relative_path(settings.files_dir, path),
        version=(previous or 0) + 1,
        tags=sorted(set(tags)),
        status=DocumentStatus.QUEUED,
        progress=0.0,
    )
    session.add(document)
    session.flush()
    return AddResult(document, created=True, needs_processing=True)


def list_documents(
    session: Session,
    scope: TenantScope,
    *,
    status: DocumentStatus | None = None,
    tag: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Document], int]:
    """One page of the tenant's documents (newest first) and the total that match."""
    stmt = scoped(select(Document), Document, scope)
    if status is not None:
        stmt = stmt.where(Document.status == status)
    rows = list(session.scalars(stmt.order_by(Document.created_at.desc(), Document.id)))
    if tag is not None:
        # Tags are a JSON list: filtered here so SQLite and PostgreSQL agree.
        rows = [d for d in rows if tag in (d.tags or [])]
    return rows[offset : offset + limit], len(rows)


def get_document(session: Session, scope: TenantScope, document_id: str) -> Document:
    document: Document = get_owned(session, Document, document_id, scope)
    return document


def document_chunks(session: Session, scope: TenantScope, document_id: str) -> list[Chunk]:
    stmt = (
        scoped(select(Chunk), Chunk, scope)
        .where(Chunk.document_id == document_id)
        .order_by(Chunk.version, Chunk.ordinal)
    )
    return list(session.scalars(stmt))


def delete_document(
    session: Session, settings: Settings, scope: TenantScope, document_id: str
) -> None:
    """Remove a document: its points from the index, its chunks and row, then its file
    (unless another of the tenant's documents has the same bytes)."""
    document = get_document(session, scope, document_id)
    document.status = DocumentStatus.DELETING
    session.flush()
    remove_document(session, settings, scope, document)


def remove_document(
    session: Session, settings: Settings, scope: TenantScope, document: Document
) -> None:
    """The removal itself (also used when a new version replaces an old one)."""
    from ingest.index_handoff import delete_from_index

    delete_from_index(settings, scope, session, document.id)
    sha256 = document.sha256
    session.delete(document)
    session.flush()
    still_used = session.scalar(
        scoped(select(func.count()).select_from(Document), Document, scope).where(
            Document.sha256 == sha256
        )
    )
    if not still_used:
        storage.remove(settings.files_dir, scope, sha256)
