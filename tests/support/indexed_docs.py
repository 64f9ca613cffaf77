"""Helpers for the retrieval tests: documents and chunks written straight to the database
(what the ingestion pipeline would have produced), then indexed with the real indexer."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from core.models import Chunk, Document, DocumentStatus
from core.tenancy import TenantScope
from retrieval.indexer import ChunkIndexer


def add_document(
    session: Session,
    scope: TenantScope,
    texts: Sequence[str],
    *,
    filename: str | None = None,
    tags: Sequence[str] = (),
    status: DocumentStatus = DocumentStatus.READY,
    version: int = 1,
    **facts: Any,
) -> tuple[Document, list[Chunk]]:
    """A document row with one chunk per text (not indexed yet); ``facts`` sets its
    metadata columns (organisations, period, period_end, document_type, user_metadata)."""
    name = filename or f"doc-{uuid.uuid4().hex[:8]}.txt"
    doc = Document(
        tenant_id=scope.tenant_id,
        filename=name,
        sha256=hashlib.sha256(name.encode()).hexdigest(),
        status=status,
        version=version,
        tags=list(tags),
        chunk_count=len(texts),
        **facts,
    )
    session.add(doc)
    session.flush()
    chunks = add_chunks(session, doc, texts, version=version)
    return doc, chunks


def add_chunks(
    session: Session, doc: Document, texts: Sequence[str], *, version: int
) -> list[Chunk]:
    chunks = [
        Chunk(
            tenant_id=doc.tenant_id,
            document_id=doc.id,
            version=version,
            ordinal=i,
            text=text,
            page_start=1,
            page_end=1,
            heading_path=["Section"],
        )
        for i, text in enumerate(texts)
    ]
    session.add_all(chunks)
    session.flush()
    return chunks


def index_document(
    indexer: ChunkIndexer,
    session: Session,
    scope: TenantScope,
    texts: Sequence[str],
    **kwargs: object,
) -> tuple[Document, list[Chunk]]:
    doc, chunks = add_document(session, scope, texts, **kwargs)  # type: ignore[arg-type]
    indexer.index(scope, session, chunks)
    return doc, chunks
