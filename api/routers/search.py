"""Search: ``POST /v1/search`` ranks the tenant's chunks (dense, BM25 or hybrid, then the
second stage) and returns them with their document, page, heading path and the score at
each stage. The work is ``retrieval.search.search``; this module only wires HTTP to it."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SearchSlotDep, ServicesDep, SessionDep, TenantDep
from retrieval.search import SearchRequest, SearchResponse, search

router = APIRouter(prefix="/v1", tags=["search"])


@router.post("/search", response_model=SearchResponse, summary="Rank the tenant's chunks")
def search_chunks(
    body: SearchRequest,
    scope: TenantDep,
    session: SessionDep,
    services: ServicesDep,
    _slot: SearchSlotDep,
) -> SearchResponse:
    return search(
        services.settings,
        session,
        scope,
        body,
        indexer=services.indexer,
        reranker=services.reranker,
    )
