"""SciFact retrieval quality through the product's own pipeline.

Ingests the BEIR SciFact corpus as one tenant (one document and one chunk per abstract, the
title as its heading) with ``ChunkIndexer``, runs the test queries through
``retrieval.search.search`` in each mode and prints nDCG@10 and Recall@100 (ir-measures,
i.e. trec_eval).

    .venv/bin/python bench/scifact_retrieval.py [--split test] [--data ../shared/data/scifact]

Embedding the 5,183 abstracts takes a few minutes on 2 cores; the vectors are cached in
``--cache`` (``bench/results/``, git-ignored; keyed by text) so later runs only index and query.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import db as database
from core import tenants
from core.models import Chunk, Document, DocumentStatus
from core.settings import Settings
from core.tenancy import TenantScope
from retrieval.embedding import DenseEmbedder, Vectors
from retrieval.rerank import ScoreFusionReranker
from retrieval.search import SearchRequest, search
from services.container import Services, build_services

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "scifact"
RUNS = ("bm25", "dense", "hybrid", "hybrid+rerank")
# Passed to searches with ``rerank=False``, which never call it.
_FIRST_STAGE_ONLY = ScoreFusionReranker(reason="first stage only")


def load_beir(folder: Path, split: str) -> tuple[dict[str, dict[str, str]], dict[str, str], dict]:
    """(corpus id -> {title, text}, query id -> text, qrels) of a BEIR-layout folder."""
    corpus = {}
    for line in (folder / "corpus.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        corpus[str(row["_id"])] = {"title": row.get("title", ""), "text": row["text"]}
    qrels: dict[str, dict[str, int]] = {}
    for line in list((folder / "qrels" / f"{split}.tsv").open(encoding="utf-8"))[1:]:
        qid, doc_id, score = line.split("\t")
        qrels.setdefault(qid, {})[doc_id] = int(score)
    queries = {}
    for line in (folder / "queries.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        if str(row["_id"]) in qrels:
            queries[str(row["_id"])] = row["text"]
    return corpus, queries, qrels


class CachedEmbedder(DenseEmbedder):
    """The same model, with vectors remembered on disk by text (benchmarks re-run often)."""

    def __init__(self, base: DenseEmbedder, cache_file: Path) -> None:
        super().__init__(base.model_ref, base.batch_size, base.card)
        self._model = base.model
        self.cache_file = cache_file
        self.cache: dict[str, np.ndarray] = {}
        if cache_file.exists():
            data = np.load(cache_file)
            self.cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    def embed(self, texts: Sequence[str]) -> Vectors:
        keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
        missing = [t for t, k in zip(texts, keys, strict=True) if k not in self.cache]
        if missing:
            for text, vector in zip(missing, super().embed(missing), strict=True):
                self.cache[hashlib.sha1(text.encode()).hexdigest()] = vector
        return np.stack([self.cache[k] for k in keys]) if keys else super().embed([])

    def save(self) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.cache)
        np.savez(
            self.cache_file, keys=np.array(keys), vectors=np.stack([self.cache[k] for k in keys])
        )


def ingest_corpus(
    services: Services, corpus: dict[str, dict[str, str]], slug: str = "scifact"
) -> tuple[TenantScope, dict[str, str]]:
    """One ready document + one chunk per corpus entry; returns chunk id -> corpus id."""
    database.upgrade(services.settings.sqlalchemy_url)
    chunk_to_corpus: dict[str, str] = {}
    with services.db.session() as session:
        tenant = tenants.create_tenant(session, slug)
        scope = TenantScope.of(tenant)
        chunks = []
        for corpus_id, entry in corpus.items():
            doc = Document(
                tenant_id=tenant.id,
                filename=f"{corpus_id}.txt",
                title=entry["title"],
                sha256=hashlib.sha256(corpus_id.encode()).hexdigest(),
                status=DocumentStatus.READY,
            )
            session.add(doc)
            session.flush()
            chunk = Chunk(
                tenant_id=tenant.id,
                document_id=doc.id,
                version=1,
                ordinal=0,
                text=entry["text"],
                heading_path=[entry["title"]] if entry["title"] else [],
            )
            chunks.append(chunk)
        session.add_all(chunks)
        session.flush()
        chunk_to_corpus = {c.id: corpus_id for c, corpus_id in zip(chunks, corpus, strict=True)}
        started = time.perf_counter()
        services.indexer.index(scope, session, chunks, progress=_progress_printer())
        print(f"\nindexed {len(chunks)} chunks in {time.perf_counter() - started:.1f} s")
    return scope, chunk_to_corpus


def _progress_printer() -> Any:
    last = [-1]

    def show(fraction: float) -> None:
        pct = int(fraction * 100)
        if pct // 10 != last[0] // 10:
            print(f" {pct}%", end="", flush=True)
        last[0] = pct

    return show


def run_queries(
    services: Services,
    scope: TenantScope,
    queries: dict[str, str],
    chunk_to_corpus: dict[str, str],
    run: str,
    depth: int = 100,
) -> dict[str, dict[str, float]]:
    """query id -> corpus id -> score (higher first) for one run."""
    settings = services.settings
    mode = "hybrid" if run == "hybrid+rerank" else run
    # Only the second stage uses a reranker: a cross-encoder loads (in the timed run) only
    # for hybrid+rerank, as when each search fetched its own.
    reranker = services.reranker if run == "hybrid+rerank" else _FIRST_STAGE_ONLY
    results: dict[str, dict[str, float]] = {}
    with services.db.session() as session:
        for qid, text in queries.items():
            first = search(
                settings,
                session,
                scope,
                SearchRequest(query=text, top_k=depth, mode=mode, rerank=False),
                indexer=services.indexer,
                reranker=reranker,
            )
            ranked = [chunk_to_corpus[h.chunk_id] for h in first.hits]
            if run == "hybrid+rerank":
                second = search(
                    settings,
                    session,
                    scope,
                    SearchRequest(
                        query=text,
                        top_k=settings.retrieval.rerank_candidates,
                        mode=mode,
                        rerank=True,
                    ),
                    indexer=services.indexer,
                    reranker=reranker,
                )
                head = [chunk_to_corpus[h.chunk_id] for h in second.hits]
                # The second stage re-orders the top candidates; the rest keep their order.
                ranked = head + [d for d in ranked if d not in set(head)]
            results[qid] = {doc: float(len(ranked) - rank) for rank, doc in enumerate(ranked)}
    return results


def evaluate(run: dict[str, dict[str, float]], qrels: dict) -> dict[str, float]:
    import ir_measures
    from ir_measures import R, nDCG

    measures = ir_measures.calc_aggregate([nDCG @ 10, R @ 100], qrels, run)
    return {"nDCG@10": measures[nDCG @ 10], "Recall@100": measures[R @ 100]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="test")
    parser.add_argument("--runs", default=",".join(RUNS))
    parser.add_argument("--cache", type=Path, default=Path("bench/results/scifact-embeddings.npz"))
    parser.add_argument("--rrf-k", type=int, default=None)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--dense-weights", default="", help="Comma-separated weights to try for score fusion."
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    corpus, queries, qrels = load_beir(args.data, args.split)
    print(f"SciFact {args.split}: {len(corpus)} documents, {len(queries)} queries")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="scifact-"))
    retrieval: dict[str, Any] = {} if args.rrf_k is None else {"rrf_k": args.rrf_k}
    settings = Settings(
        _env_file=None,
        storage={"data_dir": workdir},
        observability={"log_json": False},
        retrieval=retrieval,
    )
    # Documents are embedded through the on-disk cache; queries by the plain query embedder.
    cached = CachedEmbedder(
        DenseEmbedder(settings.models.embedding_model, settings.models.embedding_batch_size),
        args.cache,
    )
    services = build_services(settings, embedder=cached)
    scope, chunk_to_corpus = ingest_corpus(services, corpus)
    cached.save()

    print("\n| run | nDCG@10 | Recall@100 | ms/query |\n| --- | --- | --- | --- |")
    for run in args.runs.split(","):
        started = time.perf_counter()
        results = run_queries(services, scope, queries, chunk_to_corpus, run)
        per_query_ms = (time.perf_counter() - started) * 1000 / max(len(queries), 1)
        _report(run, evaluate(results, qrels), per_query_ms)
    # Tuning the score-fusion second stage: one hybrid+rerank row per dense weight.
    reranker = services.reranker
    for weight in (float(w) for w in args.dense_weights.split(",") if w):
        if isinstance(reranker, ScoreFusionReranker):
            reranker.dense_weight = weight
        results = run_queries(services, scope, queries, chunk_to_corpus, "hybrid+rerank")
        _report(f"hybrid+rerank (dense weight {weight})", evaluate(results, qrels), 0)
    services.close()
    services.db.dispose()
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


def _report(run: str, scores: dict[str, float], per_query_ms: float) -> None:
    print(f"| {run} | {scores['nDCG@10']:.3f} | {scores['Recall@100']:.3f} | {per_query_ms:.0f} |")


if __name__ == "__main__":
    main()
