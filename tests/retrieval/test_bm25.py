"""BM25: the tokenizer, the per-tenant statistics on both databases, and ranking parity
with rank-bm25's BM25Okapi (the reference) on real SciFact abstracts and claims."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rank_bm25 import BM25Okapi

from core.db import Database
from core.models import Bm25TermStat
from core.settings import Settings
from core.tenancy import TenantScope
from core.tenants import create_tenant
from retrieval import bm25
from retrieval.index import open_index
from retrieval.index_types import IndexPoint, QuerySpec
from retrieval.tokenizer import tokenize
from tests.support.helpers import SHARED_DATA

SCIFACT = SHARED_DATA / "scifact"


def test_tokenizer_folds_case_drops_stop_words_and_stems() -> None:
    assert tokenize("The Running CELLS were studied") == ["run", "cell", "studi"]
    assert tokenize("ÉCOLE école") == ["école", "école"]
    assert tokenize("IL-6 and p53 in 2019") == ["il", "6", "p53", "2019"]
    assert tokenize("not effective") == ["not", "effect"]  # negations matter in claims
    assert tokenize("") == []


def test_tokenizer_splits_cjk_into_bigrams() -> None:
    assert tokenize("带薪假期") == ["带薪", "薪假", "假期"]
    assert tokenize("年") == ["年"]
    # Han characters are folded to Simplified in every CJK run (Japanese too: documents and
    # queries alike, so matching is unchanged; see test_languages.py for Traditional).
    assert tokenize("日本語のテキスト") == ["日本", "本语", "语の", "のテ", "テキ", "キス", "スト"]
    assert tokenize("GPU服务器 setup") == ["gpu", "服务", "务器", "setup"]


def test_document_weights_are_bm25_term_frequency_part() -> None:
    terms = bm25.TermCounts.of("cell cell growth")
    vec = bm25.document_vector(terms, avg_length=3.0, k1=0.9, b=0.4)
    weights = dict(zip(vec.indices, vec.values, strict=True))
    assert weights[bm25.term_id("cell")] == pytest.approx(2 * 1.9 / (2 + 0.9))
    assert weights[bm25.term_id("growth")] == pytest.approx(1 * 1.9 / (1 + 0.9))


@pytest.fixture
def stats_db(any_db_settings: Settings) -> Iterator[tuple[Database, TenantScope, TenantScope]]:
    db = Database.from_settings(any_db_settings)
    with db.session() as session:
        a, b = create_tenant(session, "stats-a"), create_tenant(session, "stats-b")
        scopes = TenantScope(a.id, a.slug), TenantScope(b.id, b.slug)
    yield db, *scopes
    db.dispose()


def test_statistics_are_per_tenant_and_deltas_add_up(
    stats_db: tuple[Database, TenantScope, TenantScope],
) -> None:
    db, a, b = stats_db
    with db.session() as session:
        bm25.apply_delta(session, a, {1: 2, 2: 1}, doc_delta=2, length_delta=10)
        bm25.apply_delta(session, a, {1: 1, 3: 1}, doc_delta=1, length_delta=4)
        bm25.apply_delta(session, b, {1: 5}, doc_delta=5, length_delta=50)
    with db.session() as session:
        assert bm25.document_frequencies(session, a, [1, 2, 3, 4]) == {1: 3, 2: 1, 3: 1}
        assert bm25.document_frequencies(session, b, [1, 2]) == {1: 5}
        assert bm25.corpus_stats(session, a) == bm25.CorpusStats(3, 14)
        bm25.apply_delta(session, a, {1: -3, 2: -1}, doc_delta=-2, length_delta=-10)
    with db.session() as session:
        assert bm25.document_frequencies(session, a, [1, 2, 3]) == {3: 1}
        assert session.query(Bm25TermStat).filter_by(tenant_id=a.tenant_id).count() == 1
        assert bm25.corpus_stats(session, a) == bm25.CorpusStats(1, 4)


def test_concurrent_updates_of_one_tenant_lose_nothing(
    stats_db: tuple[Database, TenantScope, TenantScope],
) -> None:
    db, a, _ = stats_db
    errors: list[BaseException] = []

    def add() -> None:
        try:
            for _ in range(5):
                with db.session() as session:
                    bm25.apply_delta(session, a, {7: 1, 8: 2}, doc_delta=1, length_delta=3)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with db.session() as session:
        assert bm25.document_frequencies(session, a, [7, 8]) == {7: 20, 8: 40}
        assert bm25.corpus_stats(session, a) == bm25.CorpusStats(20, 60)


def _uuid(n: int) -> str:
    return str(uuid.UUID(int=n + 1))


def _scifact_sample(docs: int, queries: int) -> tuple[list[str], list[str]]:
    if not SCIFACT.exists():
        pytest.skip(f"SciFact not found at {SCIFACT}")
    corpus = []
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            corpus.append(f"{row['title']}\n{row['text']}")
            if len(corpus) == docs:
                break
    claims = []
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            claims.append(json.loads(line)["text"])
            if len(claims) == queries:
                break
    return corpus, claims


def test_ranking_matches_rank_bm25_okapi_on_scifact(settings: Settings, tmp_path: Path) -> None:
    corpus, claims = _scifact_sample(docs=2000, queries=100)
    db = Database.from_settings(settings)
    index = open_index(settings, "bm25parity", 4)
    try:
        with db.session() as session:
            tenant = create_tenant(session, "bm25")
            scope = TenantScope(tenant.id, tenant.slug)
            terms = [bm25.TermCounts.of(text) for text in corpus]
            df: dict[int, int] = {}
            for t in terms:
                for term in t.counts:
                    df[term] = df.get(term, 0) + 1
            bm25.apply_delta(session, scope, df, len(terms), sum(t.length for t in terms))
            avg = bm25.corpus_stats(session, scope).avg_length
            k1, b = settings.retrieval.bm25_k1, settings.retrieval.bm25_b
            index.upsert(
                scope,
                [
                    IndexPoint(_uuid(i), [1.0, 0, 0, 0], bm25.document_vector(t, avg, k1, b), {})
                    for i, t in enumerate(terms)
                ],
            )
            reference = BM25Okapi([tokenize(text) for text in corpus], k1=k1, b=b)
            overlaps = []
            for claim in claims:
                spec = QuerySpec(
                    mode="bm25",
                    dense=None,
                    sparse=bm25.query_vector(session, scope, claim),
                    limit=10,
                    candidates=10,
                    rrf_k=60,
                )
                ours = {p.id for p in index.query(scope, spec)}
                scores = reference.get_scores(tokenize(claim))
                theirs = {
                    _uuid(i) for i in sorted(range(len(corpus)), key=lambda i: -scores[i])[:10]
                }
                overlaps.append(len(ours & theirs) / 10)
        mean_overlap = sum(overlaps) / len(overlaps)
        assert mean_overlap >= 0.9, f"top-10 overlap with BM25Okapi: {mean_overlap:.3f}"
    finally:
        index.close()
        db.dispose()
