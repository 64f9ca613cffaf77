"""Documents as the API and CLI see them: add an upload (deduplicated, versioned), list,
get and delete, always within a ``TenantScope``.

A new version of a file (same filename, different bytes) is a new ``Document`` row with
``version`` = previous + 1; the older row stays searchable until the new one is ready
(:mod:`ingest.pipeline` then removes it).
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from sqlalchemy import ColumnElement, cast, exists, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from core.db import Database
from core.document_facts import facts_of
from core.errors import Conflict
from core.limits import TenantLimits, check_upload_quota
from core.models import Chunk, Document, DocumentStatus, Tenant
from core.settings import Settings
from core.tenancy import TenantScope, get_owned, scoped
from ingest import storage
from ingest.filetypes import detect
from ingest.user_metadata import check_metadata, merge_metadata
from services.container import Services

log = logging.getLogger("ragkb.ingest")

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
    metadata: Mapping[str, Any] | None = None,
    limits: TenantLimits | None = None,
) -> AddResult:
    """Store an upload and create its ``Document`` (queued); raises 413/415/422, and 429
    when a new document would take the tenant past ``limits`` (identical bytes again are
    the existing document, so they never count against the quota).
    ``filename`` identifies the file across versions (the CLI passes relative paths).

    ``metadata`` is the tenant's (``ingest.user_metadata``); ``title`` is short for its
    ``"title"`` key. A new version without ``metadata`` keeps the previous version's. Bytes
    the tenant already has return that document unchanged (``PATCH`` changes its metadata)."""
    filename = _printable(filename).strip()[:1024] or "upload"
    given = None if metadata is None else check_metadata(metadata)
    spooled = storage.spool(
        settings.files_dir, scope, source, settings.limits.max_upload_bytes, filename
    )
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
        if limits is not None:
            check_upload_quota(session, scope, limits, files=1, size_bytes=spooled.size)
        detected = detect(spooled.path, filename)
    except BaseException:
        storage.discard(spooled)
        raise
    path = storage.commit(settings.files_dir, scope, spooled)
    previous = session.scalars(
        scoped(select(Document), Document, scope)
        .where(Document.filename == filename)
        .order_by(Document.version.desc())
        .limit(1)
    ).first()
    user_metadata = dict(given if given is not None else previous.user_metadata if previous else {})
    if title and title.strip():
        user_metadata["title"] = title.strip()
    document = Document(
        tenant_id=scope.tenant_id,
        filename=filename,
        user_metadata=check_metadata(user_metadata),
        media_type=detected.media_type,
        sha256=spooled.sha256,
        size_bytes=spooled.size,
        storage_path=storage.relative_path(settings.files_dir, path),
        version=(previous.version if previous else 0) + 1,
        tags=sorted(set(tags)),
        status=DocumentStatus.QUEUED,
        progress=0.0,
    )
    session.add(document)
    session.flush()
    return AddResult(document, created=True, needs_processing=True)


def upload_filename(raw: str | None) -> str:
    """The name an uploaded file is stored under: its last path segment (browsers and
    clients may send paths, ``../`` included), without control characters; never empty,
    ``.`` or ``..``. The name is only a label: files are stored by content hash."""
    name = _printable(raw or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name if name.strip(".") else "upload"


# Bidirectional overrides and isolates: they make "exe.md" read as "dm.exe".
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _printable(text: str) -> str:
    # Control characters (NUL, CR/LF, ESC) would corrupt logs, terminals and headers that
    # show the name. Other format characters (e.g. the zero-width non-joiner of Persian
    # names) are kept.
    return "".join(
        ch for ch in text if unicodedata.category(ch) != "Cc" and ch not in _BIDI_CONTROLS
    )


def sweep_orphan_files(session: Session, settings: Settings) -> list[Path]:
    """Delete what a crashed upload left in the tenants' folders: temporary ``.upload-*``
    files, and files at a content address that no document refers to (the process died
    between storing the file and committing its row). Only files older than
    ``upload_orphan_after_s``: a younger one may be an upload in progress. Returns them."""
    root = settings.files_dir
    if not root.is_dir():
        return []
    cutoff = time.time() - settings.ingest.upload_orphan_after_s
    removed: list[Path] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        scope = TenantScope(tenant_id=folder.name, slug=folder.name)
        known = set(session.scalars(scoped(select(Document.sha256), Document, scope)))
        for path in folder.rglob("*"):
            if not path.is_file() or path.stat().st_mtime > cutoff:
                continue
            temporary = path.name.startswith(".upload-")
            if temporary or (path.parent.parent == folder and path.name not in known):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def sweep_orphan_files_in_background(settings: Settings, db: Database) -> None:
    """:func:`sweep_orphan_files` in a thread (at startup: never delays serving)."""

    def sweep() -> None:
        try:
            with db.session() as session:
                removed = sweep_orphan_files(session, settings)
        except Exception:  # the database may not be reachable yet; the next start retries
            log.warning("sweeping orphan upload files failed", exc_info=True)
            return
        if removed:
            log.warning("removed %d orphan upload file(s) left by a crash", len(removed))

    threading.Thread(target=sweep, name="orphan-sweep", daemon=True).start()


def list_documents(
    session: Session,
    scope: TenantScope,
    *,
    status: DocumentStatus | None = None,
    tag: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Document], int]:
    """One page of the tenant's documents (newest first) and the total that match: filtered,
    counted and paged in SQL, so a tenant with thousands of documents lists as fast as one
    with ten."""
    stmt = scoped(select(Document), Document, scope)
    if status is not None:
        stmt = stmt.where(Document.status == status)
    if tag is not None:
        stmt = stmt.where(_has_tag(session, tag))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    page = stmt.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
    return list(session.scalars(page)), total


def _has_tag(session: Session, tag: str) -> ColumnElement[bool]:
    """``tag`` is one of the document's tags (a JSON list): JSONB containment on
    PostgreSQL (``@>``), ``json_each`` on SQLite; the same answer on both."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(Document.tags, JSONB).op("@>")(cast(literal([tag], JSONB), JSONB))
    each = func.json_each(Document.tags).table_valued("value")
    return exists(select(literal(1)).select_from(each).where(each.c.value == tag))


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


# A document whose contextual header changed is re-indexed within the request up to this
# many chunks (a few seconds of embedding on a CPU); a larger one by a queued task.
REINDEX_INLINE_MAX_CHUNKS = 200

Reindex = Literal["none", "done", "queued"]


@dataclass(frozen=True, slots=True)
class MetadataUpdate:
    document: Document
    # "done": its points were re-indexed here; "queued": the caller submits
    # ``TaskName.REINDEX_DOCUMENT`` once committed; "none": the header did not change, or
    # the document is not indexed yet (ingestion will read the new metadata).
    reindex: Reindex


def update_metadata(
    session: Session,
    services: Services,
    scope: TenantScope,
    document_id: str,
    changes: Mapping[str, Any],
    *,
    replace: bool = False,
    inline_max_chunks: int | None = REINDEX_INLINE_MAX_CHUNKS,
) -> MetadataUpdate:
    """Change a document's metadata: ``changes`` merged into it (``null`` removes a key;
    ``replace``: ``changes`` is the whole new metadata). Filters see it once committed.

    The keys title, organisation, period and document_type are part of the contextual
    header indexed with every chunk; when the header changes, a ready document's chunks
    are re-indexed: here when it has at most ``inline_max_chunks`` (None: any number),
    else the result says ``queued``. Another tenant's id is a 404."""
    document = get_document(session, scope, document_id)
    if document.status == DocumentStatus.DELETING:
        raise Conflict(f"document {document_id!r} is being deleted")
    before = facts_of(document)
    base: Mapping[str, Any] = {} if replace else (document.user_metadata or {})
    document.user_metadata = merge_metadata(base, changes)
    # The row is locked from here to the commit (PostgreSQL): a delete waits for the
    # re-index, so it never leaves points behind.
    session.flush()
    if facts_of(document) == before or document.status != DocumentStatus.READY:
        return MetadataUpdate(document, "none")
    if inline_max_chunks is not None and document.chunk_count > inline_max_chunks:
        return MetadataUpdate(document, "queued")
    services.indexer.index(scope, session, document_chunks(session, scope, document.id))
    return MetadataUpdate(document, "done")


def reindex_document(services: Services, tenant_id: str, document_id: str) -> int | None:
    """Re-index one ready document's chunks with its current contextual header (the
    queued half of :func:`update_metadata`); returns the chunks indexed, None when the
    document is gone or not ready (ingestion then reads the current metadata itself)."""
    with services.db.session() as session:
        tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            return None
        scope = TenantScope.of(tenant)
        document = session.scalars(
            scoped(select(Document), Document, scope)
            .where(Document.id == document_id)
            .with_for_update()  # a delete waits until these points are written
        ).first()
        if document is None or document.status != DocumentStatus.READY:
            return None
        chunks = document_chunks(session, scope, document_id)
        services.indexer.index(scope, session, chunks)
        return len(chunks)


def delete_document(
    session: Session, services: Services, scope: TenantScope, document_id: str
) -> None:
    """Remove a document: its points from the index, its chunks and row, then its file
    (unless another of the tenant's documents has the same bytes)."""
    document = get_document(session, scope, document_id)
    counted = document.status == DocumentStatus.READY
    document.status = DocumentStatus.DELETING
    session.flush()
    remove_document(session, services, scope, document, counted=counted)


def remove_document(
    session: Session,
    services: Services,
    scope: TenantScope,
    document: Document,
    *,
    counted: bool | None = None,
) -> None:
    """The removal itself (also used when a new version replaces an old one). ``counted``:
    the document's BM25 statistics were committed, i.e. it became ready (default: judged
    from its status)."""
    if counted is None:
        counted = document.status == DocumentStatus.READY
    services.indexer.delete(scope, session, document.id, counted=counted)
    sha256 = document.sha256
    session.delete(document)
    session.flush()
    still_used = session.scalar(
        scoped(select(func.count()).select_from(Document), Document, scope).where(
            Document.sha256 == sha256
        )
    )
    if not still_used:
        storage.remove(services.settings.files_dir, scope, sha256)
