"""The one gateway to the vector index: every read, write, count and delete takes a
``TenantScope`` and the tenant condition is added here, never by callers.

The types and the engine protocol live in ``retrieval.index_types``. Engines
(``index_edge`` for the embedded default, ``index_client`` for a Qdrant server or cluster
and qdrant-client's local mode) import only those, and only translate a
:class:`PointFilter` into their own filter type; a ``PointFilter`` always carries a tenant
id, and only this module builds one from a scope.

One collection per embedding model (``chunks_<model>_<dim>``): a named dense vector
(cosine) and a named sparse vector holding the BM25 term-frequency weights
(``retrieval.bm25``); payload ``tenant_id`` (keyword index with ``is_tenant``),
``document_id``, ``version``, ``ordinal``, ``tags``, ``bm25_len``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.settings import Settings
from core.tenancy import TenantScope
from retrieval.index_types import IndexEngine, IndexPoint, PointFilter, QuerySpec, StoredPoint


@dataclass
class VectorIndex:
    """The tenant-scoped facade over one engine and collection."""

    engine: IndexEngine
    collection: str
    dimension: int
    extra: dict[str, Any] = field(default_factory=dict)

    def upsert(self, scope: TenantScope, points: Sequence[IndexPoint]) -> None:
        for point in points:
            owner = point.payload.get("tenant_id", scope.tenant_id)
            if not isinstance(owner, str) or not scope.owns(owner):
                raise ValueError(f"point {point.id} belongs to another tenant")
            point.payload["tenant_id"] = scope.tenant_id
        if points:
            self.engine.upsert(points)

    def points(
        self,
        scope: TenantScope,
        *,
        ids: Sequence[str] | None = None,
        document_id: str | None = None,
        version: int | None = None,
        with_vectors: bool = False,
    ) -> list[StoredPoint]:
        """The tenant's points selected by ids and/or document (and version)."""
        flt = _filter(scope, ids=ids, document_id=document_id, version=version)
        if flt.point_ids == ():
            return []
        return self.engine.scroll(flt, with_vectors)

    def delete(
        self,
        scope: TenantScope,
        *,
        ids: Sequence[str] | None = None,
        document_id: str | None = None,
        version: int | None = None,
    ) -> None:
        if ids is None and document_id is None:
            raise ValueError("say which points to delete (ids or document); see delete_tenant")
        flt = _filter(scope, ids=ids, document_id=document_id, version=version)
        if flt.point_ids != ():
            self.engine.delete(flt)

    def delete_tenant(self, scope: TenantScope) -> None:
        """Every point of the tenant (tenant deletion, full rebuild)."""
        self.engine.delete(PointFilter(tenant_id=scope.tenant_id))

    def count(self, scope: TenantScope, document_id: str | None = None) -> int:
        return self.engine.count(_filter(scope, document_id=document_id))

    def query(
        self,
        scope: TenantScope,
        spec: QuerySpec,
        *,
        document_ids: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
    ) -> list[StoredPoint]:
        """Ranked points with payload and both vectors (the second stage re-scores them)."""
        if document_ids is not None and not document_ids:
            return []
        if tags is not None and not tags:
            return []
        flt = PointFilter(
            tenant_id=scope.tenant_id,
            document_ids=tuple(document_ids) if document_ids is not None else None,
            tags=tuple(tags) if tags is not None else None,
        )
        return self.engine.query(flt, spec)

    def health(self) -> dict[str, Any]:
        return {
            "engine": self.engine.name,
            "collection": self.collection,
            "dimension": self.dimension,
            **self.engine.info(),
            **self.extra,
        }

    def close(self) -> None:
        self.engine.close()


def _filter(
    scope: TenantScope,
    *,
    ids: Sequence[str] | None = None,
    document_id: str | None = None,
    version: int | None = None,
) -> PointFilter:
    return PointFilter(
        tenant_id=scope.tenant_id,
        point_ids=tuple(str(i) for i in ids) if ids is not None else None,
        document_ids=(document_id,) if document_id is not None else None,
        version=version,
    )


def collection_name(model_name: str, dimension: int) -> str:
    return f"chunks_{model_name}_{dimension}"


def open_index(settings: Settings, model_name: str, dimension: int) -> VectorIndex:
    """The engine the settings ask for: a Qdrant server/cluster when ``qdrant_url`` is set,
    else the embedded engine under ``index_path``."""
    collection = collection_name(model_name, dimension)
    engine: IndexEngine
    if settings.index.qdrant_url:
        from retrieval.index_client import ClientEngine

        api_key = (
            settings.index.qdrant_api_key.get_secret_value()
            if settings.index.qdrant_api_key
            else None
        )
        engine = ClientEngine.server(settings.index.qdrant_url, api_key, collection, dimension)
    elif settings.index.engine == "local":
        from retrieval.index_client import ClientEngine

        engine = ClientEngine.local(settings.index_path / "local", collection, dimension)
    else:
        from retrieval.index_edge import EdgeEngine

        engine = EdgeEngine.open(settings.index_path / collection, dimension)
    return VectorIndex(engine=engine, collection=collection, dimension=dimension)
