"""Runs every question of a data set through every retrieval mode (and, with ``answers``,
through the answer path) on the real query path, and scores the runs.

Modes are the product's: ``bm25``, ``dense``, ``hybrid`` (RRF), each optionally followed by
the second stage (``+rerank``: the configured cross-encoder, else the score-fusion stage);
``hybrid+rerank`` is what the product does by default. Two plain baselines run beside them
in the same process on the same chunks: ``rank_bm25`` (``rank_bm25.BM25Okapi`` with the same
tokenizer and k1/b) and ``dense-exact`` (exact cosine over the same stored vectors, no index
engine, no fusion), so every report shows the pipeline as a ratio over them.

Rankings are per document (a document's best chunk gives its rank): judgements are per
document, and a passage corpus has one chunk per document anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Chunk, Document
from core.settings import Settings
from core.tenancy import scoped
from eval import metrics
from eval.corpus import Corpus, judgements
from eval.datasets import Dataset, EvalQuery
from eval.figures import states_figure
from eval.groundedness import groundedness as grounded_share
from eval.groundedness import make_judge
from generation.answer import AnswerResult
from generation.citations import MARKER, Citation, parse_marker
from retrieval.indexer import index_texts
from retrieval.search import SearchHit, SearchRequest, SearchResponse, search, searchable
from retrieval.tokenizer import tokenize
from services.answering import Question, answer
from services.container import Services

PIPELINE_MODE = "hybrid+rerank"
DEFAULT_MODES = ("bm25", "dense", "hybrid", PIPELINE_MODE)
BASELINES = ("rank_bm25", "dense-exact")
_BASE_MODES = ("bm25", "dense", "hybrid")
Progress = Callable[[float, str], None]


@dataclass
class RunOptions:
    modes: list[str] = field(default_factory=lambda: list(DEFAULT_MODES))
    baselines: bool = True
    answers: bool = False
    depth: int = 100
    # A metric that drops by more than this against the previous run is a regression.
    tolerance: float = 0.01

    def validate(self) -> None:
        for mode in self.modes:
            base = mode.removesuffix("+rerank")
            if base not in _BASE_MODES and mode not in BASELINES:
                known = ", ".join([*DEFAULT_MODES, "bm25+rerank", "dense+rerank", *BASELINES])
                raise ValueError(f"unknown mode {mode!r} (known: {known})")
        if not 1 <= self.depth <= 100:
            raise ValueError("depth must be between 1 and 100")


@dataclass
class _ModeRun:
    rankings: dict[str, list[str]] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)

    def timed(self, stage: str, ms: float) -> None:
        self.latency.setdefault(stage, []).append(ms)


def evaluate(
    services: Services,
    dataset: Dataset,
    corpus: Corpus,
    options: RunOptions,
    progress: Progress,
) -> dict[str, Any]:
    """``results.json`` without the comparison with earlier runs (see ``eval.runs``)."""
    options.validate()
    settings = services.settings
    started = time.perf_counter()
    qrels = judgements(dataset, corpus)
    queries = dataset.queries
    modes = list(dict.fromkeys(options.modes))
    if options.baselines:
        modes += [b for b in BASELINES if b not in modes]
    units = len(modes) * len(queries) + (len(queries) if options.answers else 0)
    done = [0]

    def step(label: str) -> None:
        done[0] += 1
        if done[0] % 5 == 0 or done[0] == units:
            progress(done[0] / max(units, 1), label)

    runs: dict[str, _ModeRun] = {}
    first_stage: dict[str, dict[str, list[str]]] = {}
    reranked: dict[str, SearchResponse] = {}
    with services.db.session() as session:
        for mode in modes:
            if mode in BASELINES:
                runs[mode] = _baseline(services, session, corpus, queries, mode, options, step)
            else:
                runs[mode] = _pipeline(
                    services, session, corpus, queries, mode, options, first_stage,
                    reranked, step,
                )  # fmt: skip
        answers = (
            _answers(services, session, corpus, dataset, qrels, reranked, step)
            if options.answers
            else None
        )
    judged = {q: r for q, r in qrels.items() if any(v > 0 for v in r.values())}
    results: dict[str, Any] = {
        "dataset": dataset.name,
        "source": dataset.source,
        "queries": len(queries),
        "judged_queries": len(judged),
        "default_mode": PIPELINE_MODE,
        "corpus": {
            "tenant": corpus.scope.slug,
            "documents": len(corpus.name_of),
            "reused": corpus.reused,
        },
        "settings": _settings_summary(settings),
        "modes": {},
        "per_query": {},
        # Each query's end-to-end search time per mode (for the latency plots).
        "latency_samples": {
            m: [round(v, 2) for v in r.latency.get("total", [])] for m, r in runs.items()
        },
        "query_text": {q.id: q.text for q in queries},
    }
    for mode, run in runs.items():
        scores = {q: metrics.ranking_scores(ranked) for q, ranked in run.rankings.items()}
        entry: dict[str, Any] = {
            "kind": "baseline" if mode in BASELINES else "pipeline",
            **({k: round(v, 4) for k, v in metrics.retrieval_metrics(judged, scores).items()}
               if judged else {}),
            "latency_ms": {stage: metrics.percentiles(v) for stage, v in run.latency.items()},
        }  # fmt: skip
        results["modes"][mode] = entry
        if judged:
            results["per_query"][mode] = {
                q: round(v, 4) for q, v in metrics.per_query(judged, scores).items()
            }
    results["ratios"] = _ratios(results["modes"])
    if answers is not None:
        results["answers"] = answers
    results["reranker"] = services.reranker.name
    results["elapsed_s"] = round(time.perf_counter() - started, 1)
    return results


def _pipeline(
    services: Services,
    session: Session,
    corpus: Corpus,
    queries: list[Any],
    mode: str,
    options: RunOptions,
    first_stage: dict[str, dict[str, list[str]]],
    reranked: dict[str, SearchResponse],
    step: Callable[[str], None],
) -> _ModeRun:
    settings = services.settings
    base = mode.removesuffix("+rerank")
    rerank = mode.endswith("+rerank")
    run = _ModeRun()
    cache = first_stage.setdefault(base, {})
    for q in queries:
        ranked = cache.get(q.id)
        if ranked is None:
            found = search(
                settings, session, corpus.scope,
                SearchRequest(query=q.text, top_k=options.depth, mode=base, rerank=False),
                indexer=services.indexer, reranker=services.reranker,
            )  # fmt: skip
            ranked = _documents(corpus, found.hits)
            cache[q.id] = ranked
            if not rerank:
                _timings(run, found.timings)
        if rerank:
            found = search(
                settings, session, corpus.scope,
                SearchRequest(query=q.text, top_k=settings.retrieval.rerank_candidates, mode=base),
                indexer=services.indexer, reranker=services.reranker,
            )  # fmt: skip
            _timings(run, found.timings)
            if mode == PIPELINE_MODE:
                reranked[q.id] = found
            head = _documents(corpus, found.hits)
            # The second stage re-orders the top candidates; the rest keep their order.
            seen = set(head)
            ranked = head + [d for d in ranked if d not in seen]
        run.rankings[q.id] = ranked[: options.depth]
        step(mode)
    return run


def _timings(run: _ModeRun, timings: dict[str, float]) -> None:
    run.timed("retrieve", timings["retrieve_ms"])
    run.timed("rerank", timings["rerank_ms"])
    run.timed("total", timings["total_ms"])


def _documents(corpus: Corpus, hits: list[SearchHit]) -> list[str]:
    return list(dict.fromkeys(corpus.key(h.document_id) for h in hits))


def _searchable_chunks(session: Session, corpus: Corpus) -> list[Chunk]:
    stmt = searchable(
        scoped(select(Chunk), Chunk, corpus.scope).join(Document, Document.id == Chunk.document_id)
    ).order_by(Chunk.id)
    return list(session.scalars(stmt))


def _baseline(
    services: Services,
    session: Session,
    corpus: Corpus,
    queries: list[Any],
    mode: str,
    options: RunOptions,
    step: Callable[[str], None],
) -> _ModeRun:
    settings = services.settings
    chunks = _searchable_chunks(session, corpus)
    keys = [corpus.key(c.document_id) for c in chunks]
    run = _ModeRun()
    score: Callable[[str], np.ndarray]
    if mode == "rank_bm25":
        from rank_bm25 import BM25Okapi

        model = BM25Okapi(
            [tokenize(text) or [""] for text in index_texts(session, corpus.scope, chunks)],
            k1=settings.retrieval.bm25_k1,
            b=settings.retrieval.bm25_b,
        )

        def score(text: str) -> np.ndarray:
            return np.asarray(model.get_scores(tokenize(text)))
    else:
        indexer = services.indexer
        stored = {
            p.id: p.dense for p in indexer.vector_index.points(corpus.scope, with_vectors=True)
        }
        matrix = np.asarray(
            [stored.get(c.id) or [0.0] * indexer.embedder.dimension for c in chunks],
            dtype=np.float32,
        )

        def score(text: str) -> np.ndarray:
            return np.asarray(matrix @ indexer.query_embedder.embed_query(text))

    for q in queries:
        started = time.perf_counter()
        scores = score(q.text) if chunks else np.zeros(0)
        top = np.argsort(-scores, kind="stable")[: options.depth * 3]
        ranked = list(dict.fromkeys(keys[i] for i in top))[: options.depth]
        run.timed("total", (time.perf_counter() - started) * 1000)
        run.rankings[q.id] = ranked
        step(mode)
    return run


def _answers(
    services: Services,
    session: Session,
    corpus: Corpus,
    dataset: Dataset,
    qrels: dict[str, dict[str, int]],
    reranked: dict[str, SearchResponse],
    step: Callable[[str], None],
) -> dict[str, Any]:
    """The default pipeline's answers: citations against the expected documents, token F1
    and exact match against gold answers, the gold figure stated, the first citation's
    document and page, refusals (right and wrong), groundedness, latency per stage."""
    judge = make_judge(services.settings, services.reranker)
    rows: list[dict[str, Any]] = []
    latency: dict[str, list[float]] = {}
    for q in dataset.queries:
        # The search is shared with the hybrid+rerank mode; its time counts here too. Eval
        # questions are not logged and not counted in the product's metrics.
        asked = answer(
            services, session, corpus.scope, Question(q.text),
            record=False, searched=reranked.get(q.id),
        )  # fmt: skip
        result, timings = asked.result, asked.timings
        cited = [corpus.key(c.document_id) for c in result.citations]
        plain = MARKER.sub("", result.answer)  # [n] markers are not part of the answer
        relevant = [k for k, v in qrels.get(q.id, {}).items() if v > 0]
        # An unanswerable question has no document to cite: its citations are not scored.
        precision, recall = (
            metrics.citation_precision_recall(cited, relevant) if q.answerable else (None, None)
        )
        latency.setdefault("retrieve", []).append(timings["retrieve_ms"])
        latency.setdefault("rerank", []).append(timings["rerank_ms"])
        latency.setdefault("generate", []).append(timings["generate_ms"])
        latency.setdefault("end_to_end", []).append(timings["total_ms"])
        rows.append(
            {
                "id": q.id,
                "question": q.text,
                "kind": q.kind,
                "answer": result.answer,
                "refused": result.refused,
                "cited": [corpus.name_of.get(c.document_id, c.filename) for c in result.citations],
                "expected": q.expected or relevant,
                "citation_precision": precision,
                "citation_recall": recall,
                "f1": metrics.token_f1(plain, q.answers) if q.answers else None,
                "em": metrics.exact_match(plain, q.answers) if q.answers else None,
                **judge_answer(q, result, plain, relevant, corpus),
                "grounded": None
                if result.refused
                else grounded_share(result.answer, result.sources_in_prompt, judge),
            }
        )
        step("answers")
    answered = [r for r in rows if not r["refused"]]
    return {
        "generator": services.generator.name,
        "groundedness_judge": judge.name,
        "questions": len(rows),
        "refusal_rate": round(sum(r["refused"] for r in rows) / len(rows), 4) if rows else 0.0,
        "citation_precision": _round(metrics.mean(r["citation_precision"] for r in answered)),
        "citation_recall": _round(metrics.mean(r["citation_recall"] for r in answered)),
        "token_f1": _round(metrics.mean(r["f1"] for r in rows)),
        "exact_match": _round(metrics.mean(r["em"] for r in rows)),
        "groundedness": _round(metrics.mean(r["grounded"] for r in answered)),
        **answer_judgements(rows),
        "latency_ms": {stage: metrics.percentiles(v) for stage, v in latency.items()},
        "items": rows,
    }


def first_citation(result: AnswerResult) -> Citation | None:
    """The citation of the first [n] marker in the answer's text (the citations are in
    order of first use, so the first of them when the text has none left)."""
    by_number = {c.n: c for c in result.citations}
    for match in MARKER.finditer(result.answer):
        for n in parse_marker(match.group(1)):
            if n in by_number:
                return by_number[n]
    return result.citations[0] if result.citations else None


def judge_answer(
    q: EvalQuery, result: AnswerResult, plain: str, relevant: list[str], corpus: Corpus
) -> dict[str, Any]:
    """The per-answer judgements behind :func:`answer_judgements` (None: not judged).

    A refused answer states no figure and cites nothing; the first citation is on the
    right page only when it is on an expected document and its pages hold an expected one.
    """
    first = None if result.refused else first_citation(result)
    on_document: bool | None = None
    on_page: bool | None = None
    if q.answerable and relevant:
        on_document = first is not None and corpus.key(first.document_id) in relevant
        if q.pages:
            on_page = bool(on_document) and first is not None and _holds(first, q.pages)
    stated: bool | None = None
    if q.answerable and q.figure is not None:
        stated = not result.refused and states_figure(plain, q.figure)
    return {
        "figure": q.figure,
        "figure_stated": stated,
        "first_citation": None
        if first is None
        else {
            "document": corpus.name_of.get(first.document_id, first.filename),
            "page_start": first.page_start,
            "page_end": first.page_end,
        },
        "expected_pages": q.pages,
        "first_citation_document": on_document,
        "first_citation_page": on_page,
    }


def _holds(citation: Citation, pages: list[int]) -> bool:
    if citation.page_start is None:
        return False
    last = citation.page_end if citation.page_end is not None else citation.page_start
    return any(citation.page_start <= p <= last for p in pages)


def answer_judgements(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Figures stated, first citations and refusals over the answer rows (each with
    ``kind``, ``refused``, ``figure_stated``, ``first_citation_document`` and
    ``first_citation_page``; None where the row is not judged on it).

    - ``figure_stated``: answerable questions with a gold figure whose answer states it
      (``_lookup`` and ``_derived``: the same per kind);
    - ``first_citation_document`` / ``_page``: answerable questions with expected documents
      (pages) whose first citation is on one (holds one);
    - ``refusal_recall``: unanswerable questions refused; ``false_refusal_rate``: answerable
      questions refused; ``refusal_precision``: refusals that were of unanswerable ones.
    """
    unanswerable = [r for r in rows if r.get("kind") == "unanswerable"]
    answerable = [r for r in rows if r.get("kind") != "unanswerable"]
    refused = [r for r in rows if r["refused"]]

    def share(values: list[bool | None]) -> float | None:
        judged = [v for v in values if v is not None]
        return round(sum(judged) / len(judged), 4) if judged else None

    def stated(kind: str | None = None) -> float | None:
        return share(
            [r["figure_stated"] for r in answerable if kind is None or r.get("kind") == kind]
        )

    return {
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "figure_stated": stated(),
        "figure_stated_lookup": stated("lookup"),
        "figure_stated_derived": stated("derived"),
        "first_citation_document": share([r["first_citation_document"] for r in answerable]),
        "first_citation_page": share([r["first_citation_page"] for r in answerable]),
        "refusal_recall": share([r["refused"] for r in unanswerable]),
        "false_refusal_rate": share([r["refused"] for r in answerable]),
        "refusal_precision": share([r.get("kind") == "unanswerable" for r in refused]),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _ratios(modes: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The default pipeline's nDCG@10 over each other mode's."""
    ours = modes.get(PIPELINE_MODE, {}).get(metrics.PRIMARY)
    out: dict[str, float] = {}
    if not ours:
        return out
    for mode, entry in modes.items():
        theirs = entry.get(metrics.PRIMARY)
        if mode != PIPELINE_MODE and theirs:
            out[f"{PIPELINE_MODE} / {mode}"] = round(ours / theirs, 3)
    return out


def _settings_summary(settings: Settings) -> dict[str, Any]:
    return {
        "embedding_model": settings.models.embedding_model,
        "rerank_model": settings.models.rerank_model,
        "rerank_candidates": settings.retrieval.rerank_candidates,
        "rrf_k": settings.retrieval.rrf_k,
        "bm25_k1": settings.retrieval.bm25_k1,
        "bm25_b": settings.retrieval.bm25_b,
        "answer_top_k": settings.answer.top_k,
        "llm_base_url": settings.llm.base_url,
    }
