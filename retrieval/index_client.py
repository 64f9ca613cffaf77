"""The qdrant-client engine: a Qdrant server or cluster (production), or qdrant-client's
local mode (a stand-in for the server in tests; small corpora only).

Only Query API features a Qdrant 1.13 server has are used: prefetch + RRF fusion, payload
filters, keyword payload indexes with ``is_tenant``. A fusion constant other than
Qdrant's default (2) is sent as a parametrised RRF query, which needs Qdrant 1.16+.
Local mode is not thread-safe (lost writes under concurrent threads), so every call
holds one lock there.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from retrieval.bm25 import SparseVec
from retrieval.index_types import DENSE, SPARSE, IndexPoint, PointFilter, QuerySpec, StoredPoint

QDRANT_DEFAULT_RRF_K = 2
_SCROLL_PAGE = 1000
_UPSERT_BATCH = 256


class ClientEngine:
    def __init__(self, client: QdrantClient, collection: str, local: bool) -> None:
        self._client = client
        self.collection = collection
        self.name = "qdrant-client-local" if local else "qdrant-server"
        self._lock: threading.Lock | None = threading.Lock() if local else None

    @classmethod
    def server(cls, url: str, api_key: str | None, collection: str, dimension: int) -> ClientEngine:
        engine = cls(QdrantClient(url=url, api_key=api_key, timeout=30), collection, local=False)
        engine._ensure_collection(dimension)
        return engine

    @classmethod
    def local(cls, path: Path | None, collection: str, dimension: int) -> ClientEngine:
        client = QdrantClient(path=str(path)) if path is not None else QdrantClient(":memory:")
        engine = cls(client, collection, local=True)
        engine._ensure_collection(dimension)
        return engine

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        if self._lock is None:
            yield
            return
        with self._lock:
            yield

    def _ensure_collection(self, dimension: int) -> None:
        if self._client.collection_exists(self.collection):
            return
        self._client.create_collection(
            self.collection,
            vectors_config={DENSE: qm.VectorParams(size=dimension, distance=qm.Distance.COSINE)},
            sparse_vectors_config={SPARSE: qm.SparseVectorParams()},
        )
        indexes: dict[str, Any] = {
            "tenant_id": qm.KeywordIndexParams(type=qm.KeywordIndexType.KEYWORD, is_tenant=True),
            "document_id": qm.PayloadSchemaType.KEYWORD,
            "tags": qm.PayloadSchemaType.KEYWORD,
            "version": qm.PayloadSchemaType.INTEGER,
        }
        if self._lock is not None:
            return  # local mode has no payload indexes (it scans); a server needs them
        for field_name, schema in indexes.items():
            self._client.create_payload_index(self.collection, field_name, schema)

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        structs = [
            qm.PointStruct(
                id=p.id,
                vector={
                    DENSE: _floats(p.dense),
                    SPARSE: qm.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                payload=p.payload,
            )
            for p in points
        ]
        with self._guard():
            for start in range(0, len(structs), _UPSERT_BATCH):
                self._client.upsert(
                    self.collection, structs[start : start + _UPSERT_BATCH], wait=True
                )

    def scroll(self, flt: PointFilter, with_vectors: bool) -> list[StoredPoint]:
        found: list[StoredPoint] = []
        offset: Any = None
        with self._guard():
            while True:
                records, offset = self._client.scroll(
                    self.collection,
                    scroll_filter=_to_filter(flt),
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=True,
                    with_vectors=with_vectors,
                )
                found.extend(_stored(r.id, r.payload, r.vector) for r in records)
                if offset is None:
                    return found

    def delete(self, flt: PointFilter) -> None:
        with self._guard():
            self._client.delete(
                self.collection, qm.FilterSelector(filter=_to_filter(flt)), wait=True
            )

    def count(self, flt: PointFilter) -> int:
        with self._guard():
            return self._client.count(self.collection, count_filter=_to_filter(flt)).count

    def query(self, flt: PointFilter, spec: QuerySpec) -> list[StoredPoint]:
        where = _to_filter(flt)
        sparse = (
            qm.SparseVector(indices=spec.sparse.indices, values=spec.sparse.values)
            if spec.sparse
            else None
        )
        common: dict[str, Any] = {
            "query_filter": where,
            "limit": spec.limit,
            "with_payload": True,
            "with_vectors": True,
        }
        if spec.mode == "hybrid" and spec.dense is not None and sparse is not None:
            fusion: Any = (
                qm.FusionQuery(fusion=qm.Fusion.RRF)
                if spec.rrf_k == QDRANT_DEFAULT_RRF_K
                else qm.RrfQuery(rrf=qm.Rrf(k=spec.rrf_k))
            )
            prefetch = [
                qm.Prefetch(query=spec.dense, using=DENSE, filter=where, limit=spec.candidates),
                qm.Prefetch(query=sparse, using=SPARSE, filter=where, limit=spec.candidates),
            ]
            with self._guard():
                response = self._client.query_points(
                    self.collection, query=fusion, prefetch=prefetch, **common
                )
        else:
            single: Any = sparse if spec.mode == "bm25" else spec.dense
            if single is None:
                return []
            using = SPARSE if spec.mode == "bm25" else DENSE
            with self._guard():
                response = self._client.query_points(
                    self.collection, query=single, using=using, **common
                )
        return [_stored(p.id, p.payload, p.vector, p.score) for p in response.points]

    def info(self) -> dict[str, Any]:
        with self._guard():
            info = self._client.get_collection(self.collection)
        return {"points": info.points_count or 0, "status": str(info.status.value)}

    def close(self) -> None:
        self._client.close()


def _floats(vector: Any) -> list[float]:
    return vector.tolist() if isinstance(vector, np.ndarray) else [float(x) for x in vector]


def _to_filter(flt: PointFilter) -> qm.Filter:
    must: list[Any] = [qm.FieldCondition(key="tenant_id", match=qm.MatchValue(value=flt.tenant_id))]
    if flt.point_ids is not None:
        must.append(qm.HasIdCondition(has_id=list(flt.point_ids)))
    if flt.document_ids is not None:
        must.append(
            qm.FieldCondition(key="document_id", match=qm.MatchAny(any=list(flt.document_ids)))
        )
    if flt.version is not None:
        must.append(qm.FieldCondition(key="version", match=qm.MatchValue(value=flt.version)))
    if flt.tags is not None:
        must.append(qm.FieldCondition(key="tags", match=qm.MatchAny(any=list(flt.tags))))
    return qm.Filter(must=must)


def _stored(point_id: Any, payload: Any, vector: Any, score: float = 0.0) -> StoredPoint:
    dense: list[float] | None = None
    sparse: SparseVec | None = None
    if isinstance(vector, dict):
        raw_dense = vector.get(DENSE)
        dense = [float(x) for x in raw_dense] if raw_dense is not None else None
        raw = vector.get(SPARSE)
        if raw is not None:
            sparse = SparseVec(list(raw.indices), list(raw.values))
    return StoredPoint(str(point_id), dict(payload or {}), dense, sparse, float(score))
