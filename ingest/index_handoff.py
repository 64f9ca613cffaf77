"""The one hand-off to the retrieval index writer (``retrieval.indexer``): ingestion never
writes an index of its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from core.models import Chunk
from core.settings import Settings
from core.tenancy import TenantScope


def index_chunks(
    settings: Settings,
    scope: TenantScope,
    session: Session,
    chunks: Sequence[Chunk],
    progress: Callable[[float], None] | None = None,
) -> None:
    from retrieval.indexer import get_indexer

    get_indexer(settings).index(scope, session, chunks, progress)


def delete_from_index(
    settings: Settings,
    scope: TenantScope,
    session: Session,
    document_id: str,
    *,
    counted: bool = True,
) -> None:
    """Remove a document's points; ``counted``: its BM25 statistics were committed (it was
    ready), so they are subtracted too (see ``ChunkIndexer.delete``)."""
    from retrieval.indexer import get_indexer

    get_indexer(settings).delete(scope, session, document_id, counted=counted)


def rebuild_index(settings: Settings, scope: TenantScope, session: Session) -> int:
    """Re-create the tenant's points and BM25 statistics from its chunk rows (see
    ``ChunkIndexer.rebuild``); returns the number of chunks indexed."""
    from retrieval.indexer import get_indexer

    return get_indexer(settings).rebuild(scope, session)


def delete_tenant_from_index(settings: Settings, scope: TenantScope) -> None:
    """Every point of the tenant (its statistics go with its rows)."""
    from retrieval.indexer import get_indexer

    get_indexer(settings).vector_index.delete_tenant(scope)
