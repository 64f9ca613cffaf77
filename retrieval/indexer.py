"""The index writer the ingestion tasks call: chunks in, dense + BM25 points out, with the
tenant's BM25 statistics kept in step (in the caller's session; the caller commits).

One ``ChunkIndexer`` per process, held by its ``services.container.Services``: the embedded
index can be opened by one process only, and the API threads and in-process workers share
it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.document_facts import DocumentFacts, contextual_header, facts_of
from core.errors import Conflict
from core.language import language_code
from core.models import Chunk, Document, DocumentStatus, Tenant
from core.settings import Settings
from core.tenancy import TenantScope, scoped
from retrieval import bm25
from retrieval.embedding import DenseEmbedder
from retrieval.index import VectorIndex, open_index
from retrieval.index_types import IndexPoint, StoredPoint

# Chunks embedded and upserted per step (one progress callback per step).
_STEP = 64


class EmbeddingModelChanged(Conflict):
    """The tenant's vectors were made by another embedding model than the one running."""

    code = "embedding_model_changed"

    def __init__(self, scope: TenantScope, indexed_with: str, running: str) -> None:
        super().__init__(
            f"tenant {scope.slug}'s documents are indexed with the embedding model "
            f"{indexed_with!r}, but this service embeds with {running!r} "
            "(RAGKB_EMBEDDING_MODEL): vectors of two models cannot be mixed. Re-embed the "
            f"tenant's chunks with `ragkb reindex --tenant {scope.slug}` (no re-parsing), "
            "or set RAGKB_EMBEDDING_MODEL back."
        )


def check_embedding_model(session: Session, scope: TenantScope, running: str) -> None:
    """Refuse (``EmbeddingModelChanged``) when the tenant's vectors come from another model."""
    tenant = session.get(Tenant, scope.tenant_id)
    indexed_with = tenant.embedding_model if tenant is not None else None
    if indexed_with is not None and indexed_with != running:
        raise EmbeddingModelChanged(scope, indexed_with, running)


def index_text(chunk: Chunk, facts: DocumentFacts | None = None) -> str:
    """What is embedded and BM25-indexed: the contextual header (the document's title,
    organisation, type and period, and the chunk's heading path), then the text. The header
    lets a chunk that never names its company or quarter be found for them; it is never
    part of what is quoted (quotes come from ``chunks.text``)."""
    header = contextual_header(facts or DocumentFacts(), chunk.heading_path)
    return f"{header}\n{chunk.text}" if header else chunk.text


def index_texts(session: Session, scope: TenantScope, chunks: Sequence[Chunk]) -> list[str]:
    """``index_text`` of each chunk, with its document's facts (read through ``scope``)."""
    stmt = scoped(select(Document), Document, scope).where(
        Document.id.in_({c.document_id for c in chunks})
    )
    # No autoflush: flushing the caller's pending writes here would hold SQLite's write
    # lock through the embedding that follows, and block the progress updates.
    with session.no_autoflush:
        facts = {d.id: facts_of(d) for d in session.scalars(stmt)}
    return [index_text(c, facts.get(c.document_id)) for c in chunks]


class ChunkIndexer:
    """Writes and reads the index with two embedders of the same model: ``embedder`` for
    documents and ``query_embedder`` for questions, so that a search never waits behind an
    ingestion batch (each serialises its own calls)."""

    def __init__(
        self, settings: Settings, embedder: DenseEmbedder, query_embedder: DenseEmbedder
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.query_embedder = query_embedder
        self._index: VectorIndex | None = None
        self._open_lock = threading.Lock()
        self._tenant_locks: dict[str, threading.RLock] = {}
        self._tenant_locks_guard = threading.Lock()

    @property
    def vector_index(self) -> VectorIndex:
        if self._index is None:
            with self._open_lock:
                if self._index is None:
                    self._index = open_index(
                        self.settings, self.embedder.name, self.embedder.dimension
                    )
        return self._index

    @contextmanager
    def _tenant_lock(self, scope: TenantScope) -> Iterator[None]:
        # Reading a tenant's existing points and updating its statistics must not interleave
        # with another thread doing the same for the same chunks.
        with self._tenant_locks_guard:
            lock = self._tenant_locks.setdefault(scope.tenant_id, threading.RLock())
        with lock:
            yield

    def index(
        self,
        scope: TenantScope,
        session: Session,
        chunks: Sequence[Chunk],
        progress: Callable[[float], None] | None = None,
    ) -> None:
        """Embed and upsert ``chunks`` (point id = chunk id); re-indexing is idempotent."""
        for chunk in chunks:
            if not scope.owns(chunk):
                raise ValueError(f"chunk {chunk.id} does not belong to tenant {scope.slug}")
        if not chunks:
            if progress:
                progress(1.0)
            return
        self._claim_model(session, scope, {c.document_id for c in chunks})
        for chunk in chunks:
            if chunk.language is None:
                chunk.language = language_code(chunk.text)
        texts = index_texts(session, scope, chunks)
        terms = [bm25.TermCounts.of(t) for t in texts]
        vectors: list[Any] = []
        for start in range(0, len(texts), _STEP):
            vectors.extend(self.embedder.embed(texts[start : start + _STEP]))
            if progress:
                # Embedding is the slow part: it stands for 90% of the work.
                progress(0.9 * min(start + _STEP, len(texts)) / len(texts))
        tags = _document_tags(session, scope, {c.document_id for c in chunks})
        index = self.vector_index
        with self._tenant_lock(scope):
            existing = index.points(scope, ids=[c.id for c in chunks], with_vectors=True)
            df_delta, doc_delta, length_delta = _contributions(existing, sign=-1)
            for t in terms:
                for term in t.counts:
                    df_delta[term] += 1
            doc_delta += len(terms)
            length_delta += sum(t.length for t in terms)
            bm25.apply_delta(session, scope, df_delta, doc_delta, length_delta)
            avg_length = bm25.corpus_stats(session, scope).avg_length
            points = [
                IndexPoint(
                    id=chunk.id,
                    dense=vector,
                    sparse=bm25.document_vector(
                        t,
                        avg_length,
                        self.settings.retrieval.bm25_k1,
                        self.settings.retrieval.bm25_b,
                    ),
                    payload=_payload(chunk, tags.get(chunk.document_id, []), t.length),
                )
                for chunk, vector, t in zip(chunks, vectors, terms, strict=True)
            ]
            for start in range(0, len(points), _STEP * 4):
                index.upsert(scope, points[start : start + _STEP * 4])
        if progress:
            progress(1.0)

    def delete(
        self,
        scope: TenantScope,
        session: Session,
        document_id: str,
        version: int | None = None,
        *,
        counted: bool = True,
    ) -> None:
        """Remove a document's points (every version when ``version`` is None) and, when
        ``counted``, their share of the tenant's BM25 statistics.

        A document's statistics are committed in the transaction that makes it ready, after
        its points are written; the points of a document that never became ready (a worker
        killed between the upsert and that commit) were never counted, and subtracting them
        would drift the statistics: the caller passes ``counted=False`` for those."""
        index = self.vector_index
        with self._tenant_lock(scope):
            if not counted:
                index.delete(scope, document_id=document_id, version=version)
                return
            existing = index.points(
                scope, document_id=document_id, version=version, with_vectors=True
            )
            if not existing:
                return
            df_delta, doc_delta, length_delta = _contributions(existing, sign=-1)
            bm25.apply_delta(session, scope, df_delta, doc_delta, length_delta)
            index.delete(scope, ids=[p.id for p in existing])

    def rebuild(
        self,
        scope: TenantScope,
        session: Session,
        progress: Callable[[float], None] | None = None,
    ) -> int:
        """Re-create the tenant's points and BM25 statistics from the ``chunks`` table (no
        re-parsing): after a lost index, a changed embedding model or drifted statistics.
        Returns the number of chunks indexed."""
        stmt = (
            scoped(select(Chunk), Chunk, scope)
            .join(Document, Document.id == Chunk.document_id)
            .where(Document.status != DocumentStatus.DELETING)
            .order_by(Chunk.document_id, Chunk.version, Chunk.ordinal)
        )
        chunks = list(session.scalars(stmt))
        with self._tenant_lock(scope):
            self.vector_index.delete_tenant(scope)
            bm25.reset(session, scope)
            # Every chunk is embedded again, with the running model: it becomes the tenant's.
            tenant = session.get(Tenant, scope.tenant_id)
            if tenant is not None:
                tenant.embedding_model = self.embedder.name
            # One call: every chunk gets the final average length of the tenant's corpus.
            self.index(scope, session, chunks, progress)
        return len(chunks)

    def _claim_model(self, session: Session, scope: TenantScope, document_ids: set[str]) -> None:
        """Record the running model as the tenant's, or refuse when the tenant has other
        chunks embedded by another model (a tenant without them simply changes model)."""
        tenant = session.get(Tenant, scope.tenant_id)
        if tenant is None or tenant.embedding_model == self.embedder.name:
            return
        if tenant.embedding_model is not None:
            others = scoped(select(Chunk.id), Chunk, scope).where(
                Chunk.document_id.not_in(document_ids)
            )
            if session.scalars(others.limit(1)).first() is not None:
                raise EmbeddingModelChanged(scope, tenant.embedding_model, self.embedder.name)
        tenant.embedding_model = self.embedder.name

    def count(self, scope: TenantScope, document_id: str | None = None) -> int:
        return self.vector_index.count(scope, document_id=document_id)

    def warm_up(self) -> None:
        """Load the embedding models and open the index now rather than on the first
        request (call it from a startup thread: it takes seconds)."""
        self.query_embedder.embed_query("warm up")
        _ = self.vector_index

    def health(self) -> dict[str, Any]:
        """For ``/readyz``: the index engine and size, the embedding model. Opens the index
        (loading the embedding model) if nothing has yet; see :meth:`warm_up`."""
        card = self.query_embedder.card
        return {
            **self.vector_index.health(),
            "embedding_model": self.settings.models.embedding_model,
            "embedding_languages": card.describe(),
            "dense_leg": "used for queries in every language"
            if card.covers_all
            else f"used for queries in {card.describe()}; dropped for queries detected in "
            "another language, which are searched with BM25 alone",
        }

    def close(self) -> None:
        with self._open_lock:
            if self._index is not None:
                self._index.close()
                self._index = None


def _document_tags(
    session: Session, scope: TenantScope, document_ids: set[str]
) -> dict[str, list[str]]:
    stmt = scoped(select(Document.id, Document.tags), Document, scope).where(
        Document.id.in_(document_ids)
    )
    return {doc_id: list(tags or []) for doc_id, tags in session.execute(stmt)}


def _payload(chunk: Chunk, tags: list[str], length: int) -> dict[str, Any]:
    return {
        "tenant_id": chunk.tenant_id,
        "document_id": chunk.document_id,
        "version": chunk.version,
        "ordinal": chunk.ordinal,
        "tags": tags,
        "bm25_len": length,
    }


def _contributions(points: Sequence[StoredPoint], sign: int) -> tuple[Counter[int], int, int]:
    """What ``points`` add to (sign=1) or take from (sign=-1) the tenant's statistics."""
    df: Counter[int] = Counter()
    length = 0
    for point in points:
        if point.sparse is not None:
            for term in point.sparse.indices:
                df[term] += sign
        length += sign * int(point.payload.get("bm25_len", 0))
    return df, sign * len(points), length
