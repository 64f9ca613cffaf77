"""The embedded engine: qdrant-edge, Qdrant's own Rust engine running in-process.

Measured here (``bench/README.md``): thousands of inserts per second and millisecond hybrid
queries at 100k points, safe to call from many threads, a real ``is_tenant`` payload index.
Dense search is exact (brute force over the tenant's points): no HNSW build is needed, and
it stays within a few milliseconds up to about a million points. The shard folder can be
opened by one process only, which is why the embedded mode runs its task queue in the API
process.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from core.errors import ServiceUnavailable
from retrieval.bm25 import SparseVec
from retrieval.index_types import DENSE, SPARSE, IndexPoint, PointFilter, QuerySpec, StoredPoint

_SCROLL_PAGE = 1000
_PAYLOAD_INDEXES: dict[str, Any] = {
    "tenant_id": qe.KeywordIndexParams(is_tenant=True),
    "document_id": qe.PayloadSchemaType.Keyword,
    "tags": qe.PayloadSchemaType.Keyword,
    "version": qe.PayloadSchemaType.Integer,
}


class EdgeEngine:
    name = "qdrant-edge"

    def __init__(self, shard: qe.EdgeShard, path: Path) -> None:
        self._shard = shard
        self.path = path

    @classmethod
    def open(cls, path: Path, dimension: int) -> EdgeEngine:
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dimension, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams()},
        )
        try:
            if path.is_dir() and any(path.iterdir()):
                shard = qe.EdgeShard.load(str(path), config)
            else:
                path.mkdir(parents=True, exist_ok=True)
                shard = qe.EdgeShard.create(str(path), config)
        except Exception as exc:
            if "WouldBlock" in str(exc):  # the WAL lock: another process has it open
                raise ServiceUnavailable(
                    f"the embedded index {path} is open in another process (a running "
                    "`ragkb serve`?): run this command through the API, stop the server, or "
                    "use a Qdrant server (RAGKB_QDRANT_URL)",
                    code="index_locked",
                ) from exc
            raise
        existing = set(shard.info().payload_schema)
        for field_name, schema in _PAYLOAD_INDEXES.items():
            if field_name not in existing:
                shard.update(qe.UpdateOperation.create_field_index(field_name, schema))
        return cls(shard, path)

    def upsert(self, points: Sequence[IndexPoint]) -> None:
        batch = [
            qe.Point(
                p.id,
                {
                    DENSE: _floats(p.dense),
                    SPARSE: qe.SparseVector(p.sparse.indices, p.sparse.values),
                },
                p.payload,
            )
            for p in points
        ]
        self._shard.update(qe.UpdateOperation.upsert_points(batch))

    def scroll(self, flt: PointFilter, with_vectors: bool) -> list[StoredPoint]:
        found: list[StoredPoint] = []
        offset: Any = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=_to_filter(flt),
                    with_payload=True,
                    with_vector=with_vectors,
                )
            )
            found.extend(_stored(r.id, r.payload, r.vector) for r in records)
            if offset is None:
                return found

    def delete(self, flt: PointFilter) -> None:
        self._shard.update(qe.UpdateOperation.delete_points_by_filter(_to_filter(flt)))

    def count(self, flt: PointFilter) -> int:
        return int(self._shard.count(qe.CountRequest(filter=_to_filter(flt), exact=True)))

    def query(self, flt: PointFilter, spec: QuerySpec) -> list[StoredPoint]:
        where = _to_filter(flt)
        exact = qe.SearchParams(exact=True)
        dense = qe.Query.Nearest(spec.dense, using=DENSE) if spec.dense is not None else None
        sparse = (
            qe.Query.Nearest(qe.SparseVector(spec.sparse.indices, spec.sparse.values), using=SPARSE)
            if spec.sparse
            else None
        )
        if spec.mode == "hybrid" and dense is not None and sparse is not None:
            request = qe.QueryRequest(
                limit=spec.limit,
                prefetches=[
                    qe.Prefetch(limit=spec.candidates, query=dense, filter=where, params=exact),
                    qe.Prefetch(limit=spec.candidates, query=sparse, filter=where),
                ],
                query=qe.Fusion.Rrf(k=spec.rrf_k),  # type: ignore[arg-type]
                filter=where,
                with_payload=True,
                with_vector=True,
            )
        else:
            single = sparse if spec.mode == "bm25" else dense
            if single is None:
                return []
            request = qe.QueryRequest(
                limit=spec.limit,
                query=single,
                filter=where,
                params=exact,
                with_payload=True,
                with_vector=True,
            )
        return [_stored(p.id, p.payload, p.vector, p.score) for p in self._shard.query(request)]

    def info(self) -> dict[str, Any]:
        info = self._shard.info()
        return {
            "points": info.points_count,
            "segments": info.segments_count,
            "path": str(self.path),
        }

    def close(self) -> None:
        self._shard.flush()
        self._shard.close()


def _floats(vector: Any) -> list[float]:
    return vector.tolist() if isinstance(vector, np.ndarray) else [float(x) for x in vector]


def _to_filter(flt: PointFilter) -> qe.Filter:
    must: list[Any] = [qe.FieldCondition("tenant_id", match=qe.MatchValue(flt.tenant_id))]
    if flt.point_ids is not None:
        must.append(qe.HasIdCondition(set(flt.point_ids)))
    if flt.document_ids is not None:
        must.append(qe.FieldCondition("document_id", match=qe.MatchAny(list(flt.document_ids))))
    if flt.version is not None:
        must.append(qe.FieldCondition("version", match=qe.MatchValue(flt.version)))
    if flt.tags is not None:
        must.append(qe.FieldCondition("tags", match=qe.MatchAny(list(flt.tags))))
    return qe.Filter(must=must)


def _stored(point_id: Any, payload: Any, vector: Any, score: float = 0.0) -> StoredPoint:
    dense: list[float] | None = None
    sparse: SparseVec | None = None
    if isinstance(vector, dict):
        dense = vector.get(DENSE)
        raw = vector.get(SPARSE)
        if raw is not None:
            sparse = SparseVec(list(raw.indices), list(raw.values))
    return StoredPoint(str(point_id), dict(payload or {}), dense, sparse, float(score))
