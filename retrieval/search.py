"""Search: dense, BM25 or hybrid (RRF-fused) first stage, then the second stage.

Every hit carries the score of each stage it went through (``dense`` cosine, ``bm25``,
``fused`` RRF, ``rerank``) and is joined to SQL, the source of truth, through the tenant's
scope: a point whose chunk or document is gone, or not the document's current ready
version, is never returned.

The query's language is detected (``core.language``). When the embedding model does not
cover it (all-MiniLM-L6-v2 and a Chinese question), the dense leg is noise: it is dropped
from fusion and from the second stage, and ``dense_leg`` in the response says so. On
CMRC2018 (Chinese) it took hybrid from 0.89 to BM25's 0.98 nDCG@10.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, Field
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from core.document_facts import FACT_COLUMNS, facts_of
from core.errors import BadRequest
from core.language import Detection, detect_language
from core.models import Chunk, Document, DocumentStatus
from core.passages import Passage
from core.settings import Settings
from core.tenancy import TenantScope
from retrieval import bm25
from retrieval.document_match import (
    FILTER_FIELDS,
    DocumentCatalogue,
    DocumentMatch,
    MetadataFilters,
    filter_documents,
    match_question,
)
from retrieval.embedding_models import ModelCard
from retrieval.index_types import Mode, QuerySpec, StoredPoint
from retrieval.indexer import ChunkIndexer, check_embedding_model
from retrieval.rerank import Candidate, Reranker, second_stage

# The first stage fetches this many times what it needs, so that points that SQL no longer
# considers searchable (a version being replaced, a document being deleted) leave room.
_OVERFETCH = 2
S = TypeVar("S", bound=Select[*tuple[Any, ...]])


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=4000, description="What to look for.")
    top_k: int = Field(default=10, ge=1, le=100, description="Chunks to return.")
    mode: Literal["dense", "bm25", "hybrid"] = Field(
        default="hybrid", description="First stage: dense, BM25, or both fused with RRF."
    )
    rerank: bool = Field(default=True, description="Run the second stage.")
    document_ids: list[str] | None = Field(
        default=None, max_length=1000, description="Only these documents (of yours)."
    )
    tags: list[str] | None = Field(
        default=None, max_length=100, description="Only documents with one of these tags."
    )
    filters: MetadataFilters | None = Field(
        default=None,
        description="Only documents whose metadata matches, e.g. "
        '{"organisation": "Apple", "period": "2023-Q1"}. Allowed fields: '
        + ", ".join(FILTER_FIELDS)
        + ".",
    )


# A ranked chunk: the passage, its version and place in the document, its scores. (No
# docstring: it would become the schema's description in the API's OpenAPI document.)
@dataclass(frozen=True, slots=True, kw_only=True)
class SearchHit(Passage):
    version: int
    ordinal: int
    scores: Annotated[
        dict[str, float],
        Field(description="Score at each stage: dense, bm25, fused, rerank."),
    ] = field(default_factory=dict)
    score: Annotated[float, Field(description="The final score the list is ordered by.")]


class SearchResponse(BaseModel):
    hits: list[SearchHit]
    reranker: str = Field(description="What ran as the second stage, or 'none' and why.")
    timings: dict[str, float] = Field(description="retrieve_ms, rerank_ms, total_ms.")
    language: str = Field(
        default="und", description="The query's language (ISO 639-1; 'und': undetermined)."
    )
    dense_leg: str = Field(
        default="used",
        description="'used', or why the dense (embedding) leg was dropped or kept: it is "
        "dropped when the embedding model does not cover the query's language.",
    )
    documents: str = Field(
        default="all",
        description="Which documents were searched: 'all', 'filtered: n document(s)', or "
        "'preferred: n document(s) matching …' when the question names an organisation or "
        "a period that your documents' metadata knows.",
    )


def search(
    settings: Settings,
    session: Session,
    scope: TenantScope,
    request: SearchRequest,
    *,
    indexer: ChunkIndexer,
    reranker: Reranker,
) -> SearchResponse:
    """The tenant's chunks for ``request``: first stage in the index, then ``reranker``
    (callers pass their process's, ``services.container.Services``)."""
    query = request.query.strip()
    if not query:
        raise BadRequest("the query is empty", code="empty_query")
    started = time.perf_counter()
    check_embedding_model(session, scope, indexer.query_embedder.name)
    wanted = max(request.top_k, settings.retrieval.rerank_candidates if request.rerank else 0)

    detection = detect_language(query)
    sparse_query = bm25.query_vector(session, scope, query)
    mode, dense_usable, dense_leg = _legs(
        request.mode, indexer.query_embedder.card, detection, sparse_query
    )
    # Dense and BM25 scores are both computed for every candidate (when there is a query
    # vector for them): the response reports them and the second stage fuses them.
    dense_query = (
        indexer.query_embedder.embed_query(query)
        if mode != "bm25" or (request.rerank and dense_usable)
        else None
    )
    spec = QuerySpec(
        mode=mode,
        dense=dense_query.tolist() if dense_query is not None else None,
        sparse=sparse_query,
        limit=wanted * _OVERFETCH,
        candidates=max(settings.retrieval.candidates, wanted * _OVERFETCH),
        rrf_k=settings.retrieval.rrf_k,
    )
    focus = _focus(settings, session, scope, request, query)
    if focus.document_ids == []:
        return _nothing(request, detection, dense_leg, focus, started)

    def first_stage(document_ids: list[str] | None) -> list[SearchHit]:
        points = indexer.vector_index.query(
            scope, spec, document_ids=document_ids, tags=request.tags
        )
        return _hydrate(session, scope, points, mode, dense_query, sparse_query)[:wanted]

    first = first_stage(focus.document_ids)
    preferred: frozenset[str] = frozenset()
    if focus.match is not None:
        # The named documents' best chunks first, then the others': a wrong match costs
        # a place, never the answer.
        preferred = frozenset(focus.match.document_ids)
        named = first_stage(focus.match.document_ids)
        first = named + [h for h in first if h.document_id not in preferred][:wanted]
    retrieved = time.perf_counter()

    if request.rerank and first:
        candidates = first  # the top max(rerank_candidates, top_k) of the first stage
        kept = second_stage(
            reranker,
            query,
            [
                Candidate(h.text, h.document_id, h.scores.get("dense"), h.scores.get("bm25"))
                for h in candidates
            ],
            top_k=request.top_k,
            max_per_document=None
            if focus.about_one
            else settings.retrieval.rerank_max_per_document,
            min_score=settings.retrieval.rerank_min_score,
            preferred=preferred,
            prefer=settings.retrieval.question_match,
            boost=settings.retrieval.match_boost,
        )
        hits = []
        for i, score in kept:
            hit = candidates[i]
            hit.scores["rerank"] = score
            hits.append(replace(hit, score=score))
        reranker_name = reranker.name if dense_usable else f"{reranker.name} (dense leg dropped)"
    else:
        hits = first[: request.top_k]
        reranker_name = "none (rerank=false)" if not request.rerank else "none (no candidates)"
    done = time.perf_counter()
    return SearchResponse(
        hits=hits,
        reranker=reranker_name,
        timings={
            "retrieve_ms": round((retrieved - started) * 1000, 2),
            "rerank_ms": round((done - retrieved) * 1000, 2),
            "total_ms": round((done - started) * 1000, 2),
        },
        language=detection.language,
        dense_leg=dense_leg,
        documents=focus.describe(),
    )


@dataclass(frozen=True, slots=True)
class _Focus:
    """The documents a search is restricted to (None: all) and those it prefers."""

    document_ids: list[str] | None
    match: DocumentMatch | None = None
    filtered: bool = False

    @property
    def about_one(self) -> bool:
        """About one document: then every good chunk of it may be kept (no cap)."""
        if self.match is not None:
            return len(self.match.document_ids) == 1
        return self.filtered and self.document_ids is not None and len(self.document_ids) == 1

    def describe(self) -> str:
        if self.match is not None:
            return f"preferred: {self.match.describe()}"
        if self.filtered:
            return f"filtered: {len(self.document_ids or [])} document(s)"
        return "all" if self.document_ids is None else f"{len(self.document_ids)} given"


def _focus(
    settings: Settings,
    session: Session,
    scope: TenantScope,
    request: SearchRequest,
    query: str,
) -> _Focus:
    if request.filters is not None and not request.filters.is_empty():
        ids = filter_documents(session, scope, request.filters, request.document_ids)
        return _Focus(ids, filtered=True)
    if settings.retrieval.question_match == "off":
        return _Focus(request.document_ids)
    catalogue = DocumentCatalogue.load(session, scope, request.document_ids)
    return _Focus(request.document_ids, match_question(catalogue, query))


def _nothing(
    request: SearchRequest, detection: Detection, dense_leg: str, focus: _Focus, started: float
) -> SearchResponse:
    """No document matches the filters: an empty result that says so."""
    ms = round((time.perf_counter() - started) * 1000, 2)
    return SearchResponse(
        hits=[],
        reranker="none (no document matches the filters)",
        timings={"retrieve_ms": ms, "rerank_ms": 0.0, "total_ms": ms},
        language=detection.language,
        dense_leg=dense_leg,
        documents=focus.describe(),
    )


def _legs(
    mode: Mode, card: ModelCard, detection: Detection, sparse_query: bm25.SparseVec
) -> tuple[Mode, bool, str]:
    """The first-stage mode that actually runs, whether dense scores may be used, and what
    became of the dense leg (for the response)."""
    if not detection.determined or card.covers(detection.language):
        return mode, True, "used"
    why = (
        f"the query's language ({detection.language}) is not one the embedding model "
        f"covers ({card.describe()})"
    )
    if mode == "dense":
        return mode, True, f"kept as asked (mode=dense), though {why}"
    if not sparse_query:
        return mode, True, f"kept: no query term is in the BM25 index, though {why}"
    return "bm25", False, f"dropped: {why}; BM25 alone ranks"


def searchable(stmt: S) -> S:
    """Searchable = the chunk belongs to its document's current version and that document
    is ready. Ingestion bumps ``documents.version`` when a new version is fully indexed, so
    the old version stays searchable until then and a half-indexed one never is."""
    return stmt.where(Chunk.version == Document.version, Document.status == DocumentStatus.READY)


def _hydrate(
    session: Session,
    scope: TenantScope,
    points: Sequence[StoredPoint],
    mode: str,
    dense_query: np.ndarray | None,
    sparse_query: bm25.SparseVec,
) -> list[SearchHit]:
    """Join ranked points to their chunk rows (through the scope), keeping the rank order."""
    if not points:
        return []
    rows = _owned_chunks(session, scope, [p.id for p in points])
    hits: list[SearchHit] = []
    for point in points:
        if point.id not in rows:
            continue
        chunk, document = rows[point.id]
        facts = facts_of(document)
        scores: dict[str, float] = {}
        if dense_query is not None and point.dense is not None:
            scores["dense"] = float(np.dot(dense_query, np.asarray(point.dense, np.float32)))
        if sparse_query and point.sparse is not None:
            scores["bm25"] = sparse_query.dot(point.sparse)
        primary = mode
        if mode == "hybrid":
            # With no query term known to BM25 the engine ran the dense branch alone.
            primary = "fused" if sparse_query else "dense"
            scores[primary] = point.score
        hits.append(
            SearchHit(
                chunk_id=chunk.id,
                document_id=chunk.document_id,
                filename=document.filename,
                document_title=facts.title,
                organisations=tuple(facts.organisations),
                period=facts.period,
                period_end=facts.period_end.isoformat() if facts.period_end else None,
                version=chunk.version,
                ordinal=chunk.ordinal,
                text=chunk.text,
                page_start=chunk.page_start,
                page_end=chunk.page_end,
                heading_path=list(chunk.heading_path or []),
                printed_pages=(chunk.extra or {}).get("printed_pages"),
                scores=scores,
                score=scores.get(primary, point.score),
            )
        )
    return hits


def _owned_chunks(
    session: Session, scope: TenantScope, chunk_ids: list[str]
) -> dict[str, tuple[Chunk, Any]]:
    """Searchable chunks (with their document) among ``chunk_ids`` that the tenant owns.

    The batch form of ``core.tenancy.get_owned``: rows are looked up by primary key and the
    tenant is checked on each row. Putting the tenant condition in the SQL instead makes
    SQLite (no table statistics) walk the tenant's whole chunk index: 125 ms instead of 1 ms
    per search at 100k chunks.
    """
    # The document's columns, not the document: its context JSON (page labels, running
    # headers) would be decoded for every hit.
    stmt = (
        select(Chunk, Document.filename, Document.tenant_id, *FACT_COLUMNS)
        .join(Document, Document.id == Chunk.document_id)
        .where(Chunk.id.in_(chunk_ids))
    )
    return {
        row[0].id: (row[0], row)
        for row in session.execute(searchable(stmt))
        if scope.owns(row[0]) and scope.owns(row.tenant_id)
    }
