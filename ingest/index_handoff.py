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
    settings: Settings, scope: TenantScope, session: Session, document_id: str
) -> None:
    from retrieval.indexer import get_indexer

    get_indexer(settings).delete(scope, session, document_id)
