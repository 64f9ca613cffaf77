"""One conformance suite every index engine passes: qdrant-edge (the embedded default) and
qdrant-client's local mode (the stand-in for the server path: same client code, same
Query API requests as against a Qdrant server).

Vectors are synthetic (seeded) so that exact expected rankings can be computed here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import ServiceUnavailable
from core.tenancy import TenantScope
from retrieval.bm25 import SparseVec
from retrieval.index import VectorIndex, open_index
from retrieval.index_types import IndexPoint, PointFilter, QuerySpec
from tests.support.helpers import make_settings

DIM = 16
ENGINES = ["edge", "local"]
A = TenantScope(tenant_id="tenant-a-id", slug="a")
B = TenantScope(tenant_id="tenant-b-id", slug="b")


def _open(tmp_path: Path, engine: str) -> VectorIndex:
    settings = make_settings(tmp_path / "data", index={"engine": engine})
    return open_index(settings, "conformance", DIM)


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def index(tmp_path: Path, engine_name: str) -> Iterator[VectorIndex]:
    idx = _open(tmp_path, engine_name)
    yield idx
    idx.close()


def _uuid(n: int, tenant: str) -> str:
    return f"{'a' if tenant == A.tenant_id else 'b'}{n:07d}-0000-4000-8000-000000000000"


def _points(
    scope: TenantScope, count: int, seed: int, doc_size: int = 10, vocabulary: int = 40
) -> list[IndexPoint]:
    """``count`` points in documents of ``doc_size``; tenants share the term vocabulary."""
    rng = np.random.default_rng(seed)
    points = []
    for n in range(count):
        dense = rng.normal(size=DIM).astype(np.float32)
        dense /= np.linalg.norm(dense)
        terms = sorted(rng.choice(vocabulary, size=5, replace=False).tolist())
        doc = n // doc_size
        points.append(
            IndexPoint(
                id=_uuid(n, scope.tenant_id),
                dense=dense,
                sparse=SparseVec(terms, rng.uniform(0.1, 2.0, size=5).round(4).tolist()),
                payload={
                    "document_id": f"{scope.slug}-doc-{doc}",
                    "version": 1 + n % 2,
                    "ordinal": n,
                    "tags": [f"tag{doc % 3}"],
                    "bm25_len": 5,
                },
            )
        )
    return points


def _spec(
    mode: str, dense: list[float] | None, sparse: SparseVec | None, limit: int = 10
) -> QuerySpec:
    return QuerySpec(mode=mode, dense=dense, sparse=sparse, limit=limit, candidates=50, rrf_k=60)  # type: ignore[arg-type]


def _query_vectors(seed: int = 99) -> tuple[list[float], SparseVec]:
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=DIM)
    dense /= np.linalg.norm(dense)
    return dense.tolist(), SparseVec([1, 5, 9, 17], [1.5, 0.7, 2.2, 0.4])


def _exact_dense(points: list[IndexPoint], query: list[float]) -> list[tuple[str, float]]:
    scored = [(p.id, float(np.dot(np.asarray(p.dense), query))) for p in points]
    return sorted(scored, key=lambda item: -item[1])


def _exact_sparse(points: list[IndexPoint], query: SparseVec) -> list[tuple[str, float]]:
    scored = [(p.id, query.dot(p.sparse)) for p in points]
    return sorted([s for s in scored if s[1] > 0], key=lambda item: -item[1])


def test_upsert_count_read_back_and_idempotent(index: VectorIndex) -> None:
    points_a, points_b = _points(A, 40, seed=1), _points(B, 30, seed=2)
    index.upsert(A, points_a)
    index.upsert(B, points_b)
    index.upsert(A, _points(A, 40, seed=1))  # the same points again: nothing new
    assert index.count(A) == 40
    assert index.count(B) == 30
    assert index.count(A, document_id="a-doc-0") == 10

    stored = {p.id: p for p in index.points(A, ids=[points_a[3].id], with_vectors=True)}
    original = points_a[3]
    got = stored[original.id]
    assert got.payload["document_id"] == "a-doc-0"
    assert got.payload["tenant_id"] == A.tenant_id
    assert got.dense is not None and np.allclose(got.dense, original.dense, atol=1e-5)
    assert got.sparse is not None and got.sparse.indices == original.sparse.indices
    assert np.allclose(got.sparse.values, original.sparse.values, atol=1e-4)


def test_dense_and_bm25_rank_like_exact_scoring(index: VectorIndex) -> None:
    points = _points(A, 60, seed=3)
    index.upsert(A, points)
    index.upsert(B, _points(B, 60, seed=4))
    dense, sparse = _query_vectors()

    got = [(p.id, p.score) for p in index.query(A, _spec("dense", dense, None))]
    expected = _exact_dense(points, dense)[:10]
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-4)

    got = [(p.id, p.score) for p in index.query(A, _spec("bm25", None, sparse))]
    expected = _exact_sparse(points, sparse)[:10]
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert np.allclose([s for _, s in got], [s for _, s in expected], atol=1e-3)


@pytest.mark.parametrize("k", [2, 60])  # 2: Qdrant's default (plain RRF fusion); 60: parametrised
def test_hybrid_is_reciprocal_rank_fusion_of_both_branches(index: VectorIndex, k: int) -> None:
    points = _points(A, 80, seed=5)
    index.upsert(A, points)
    index.upsert(B, _points(B, 80, seed=6))
    dense, sparse = _query_vectors()
    fused: dict[str, float] = {}
    for ranking in (_exact_dense(points, dense)[:50], _exact_sparse(points, sparse)[:50]):
        for rank, (point_id, _) in enumerate(ranking):
            fused[point_id] = fused.get(point_id, 0.0) + 1.0 / (k + rank)
    spec = QuerySpec(mode="hybrid", dense=dense, sparse=sparse, limit=10, candidates=50, rrf_k=k)
    hits = index.query(A, spec)
    assert len(hits) == 10
    best = sorted(fused.values(), reverse=True)[:10]
    assert np.allclose([h.score for h in hits], best, atol=1e-6)
    for hit in hits:  # ties may come in either order, but every score is the RRF score
        assert fused[hit.id] == pytest.approx(hit.score, abs=1e-6)
        assert hit.dense is not None and hit.sparse is not None  # the second stage needs both


def test_filters_by_document_and_tag(index: VectorIndex) -> None:
    index.upsert(A, _points(A, 60, seed=7))
    dense, sparse = _query_vectors()
    for mode in ("dense", "bm25", "hybrid"):
        spec = _spec(mode, dense, sparse, limit=100)
        hits = index.query(A, spec, document_ids=["a-doc-1", "a-doc-4"])
        assert hits and {h.payload["document_id"] for h in hits} <= {"a-doc-1", "a-doc-4"}
        hits = index.query(A, spec, tags=["tag2"])
        assert hits and all(h.payload["tags"] == ["tag2"] for h in hits)
        assert index.query(A, spec, document_ids=[]) == []
    by_version = index.points(A, document_id="a-doc-2", version=2)
    assert len(by_version) == 5 and all(p.payload["version"] == 2 for p in by_version)


def test_another_tenant_sees_and_deletes_nothing_of_yours(index: VectorIndex) -> None:
    points_a = _points(A, 30, seed=8)
    index.upsert(A, points_a)
    index.upsert(B, _points(B, 30, seed=9))
    dense, sparse = _query_vectors()
    a_docs = [f"a-doc-{i}" for i in range(3)]
    a_ids = [p.id for p in points_a]
    for mode in ("dense", "bm25", "hybrid"):
        spec = _spec(mode, dense, sparse, limit=100)
        assert all(h.payload["tenant_id"] == B.tenant_id for h in index.query(B, spec))
        assert index.query(B, spec, document_ids=a_docs) == []
    assert index.points(B, ids=a_ids) == []
    assert index.points(B, document_id="a-doc-0") == []
    index.delete(B, ids=a_ids)
    index.delete(B, document_id="a-doc-0")
    assert index.count(A) == 30
    with pytest.raises(ValueError):
        index.upsert(
            B,
            [
                IndexPoint(
                    id=a_ids[0],
                    dense=[0.0] * DIM,
                    sparse=SparseVec([], []),
                    payload={"tenant_id": A.tenant_id},
                )
            ],
        )


def test_delete_by_document_version_and_tenant(index: VectorIndex) -> None:
    index.upsert(A, _points(A, 30, seed=10))
    index.upsert(B, _points(B, 30, seed=11))
    index.delete(A, document_id="a-doc-0", version=1)
    assert index.count(A, document_id="a-doc-0") == 5
    index.delete(A, document_id="a-doc-0")
    assert index.count(A, document_id="a-doc-0") == 0
    assert index.count(A) == 20
    index.delete_tenant(A)
    assert index.count(A) == 0
    assert index.count(B) == 30


def test_every_call_needs_a_tenant_and_a_selector(index: VectorIndex) -> None:
    with pytest.raises(ValueError):
        PointFilter(tenant_id="")
    with pytest.raises(ValueError):
        index.delete(A)  # no ids, no document: refuse rather than delete the tenant


def test_concurrent_writers_lose_nothing(index: VectorIndex) -> None:
    def write(batch: int) -> None:
        for point in _points(A, 200, seed=12)[batch * 25 : (batch + 1) * 25]:
            index.upsert(A, [point])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert index.count(A) == 200


def test_points_survive_reopening(tmp_path: Path, engine_name: str) -> None:
    index = _open(tmp_path, engine_name)
    index.upsert(A, _points(A, 25, seed=13))
    index.close()
    reopened = _open(tmp_path, engine_name)
    try:
        assert reopened.count(A) == 25
    finally:
        reopened.close()


def test_a_second_opener_of_the_embedded_index_gets_a_clear_error(tmp_path: Path) -> None:
    # qdrant-edge locks its folder (WAL): the CLI next to a running server must say why.
    first = _open(tmp_path, "edge")
    try:
        with pytest.raises(ServiceUnavailable, match="open in another process"):
            _open(tmp_path, "edge")
    finally:
        first.close()
