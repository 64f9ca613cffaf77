"""Query latency and throughput under concurrency, against a live ``ragkb serve``.

    .venv/bin/python bench/query_concurrency.py [--clients 1,4,16] [--duration 20]
        [--passages 2000] [--cells bm25,dense,hybrid,bm25+rerank,...,query]

SciFact passages (the first ``--passages``; one document and one chunk each, indexed in
process through ``eval.corpus.prepare``) go into a throw-away data dir (SQLite + the
embedded index); then ``ragkb serve`` runs on a loopback port over it and, for each cell,
``N`` closed-loop clients (threads, one HTTP connection each) send SciFact claims for
``--duration`` seconds: ``/v1/search`` in each mode with and without the second stage, and
``/v1/query`` end to end with the embedded extractive generator. The tenant's rate limits
are raised so that the limiter never answers (this measures the service, not the limits).

Prints one table row per cell (p50/p95/p99 ms of 2xx answers, requests/s), the ratios
between modes at the same concurrency, and writes ``bench/results/query_concurrency.json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SHARED_DATA,
    UNLIMITED,
    Call,
    closed_loop,
    load_average,
    machine,
    query_calls,
    ratio,
    running_server,
    scifact_queries,
    search_calls,
    write_result,
)

CELLS = (
    "bm25",
    "dense",
    "hybrid",
    "bm25+rerank",
    "dense+rerank",
    "hybrid+rerank",
    "query",
)


def prepare_corpus(
    data_dir: Path, passages: int, name: str = "bench-scifact", database_url: str | None = None
) -> str:
    """Index the first ``passages`` SciFact abstracts for a tenant; returns its slug."""
    from core import db as database
    from core.settings import Settings
    from eval.corpus import eval_slug, prepare
    from eval.datasets import Dataset, load_beir
    from services.container import build_services

    scifact = load_beir(SHARED_DATA / "scifact")
    subset = dict(list(scifact.passages.items())[:passages])
    dataset = Dataset(name, "passages", scifact.queries, subset)
    settings = Settings(
        _env_file=None,
        storage={"data_dir": data_dir, "database_url": database_url},
        observability={"log_json": False},
    )
    settings.ensure_dirs()
    database.upgrade(settings.sqlalchemy_url)
    services = build_services(settings)
    started = time.perf_counter()
    last = [-1]

    def progress(fraction: float, what: str) -> None:
        if int(fraction * 10) != last[0]:
            last[0] = int(fraction * 10)
            print(f"  {what}: {fraction:.0%}", flush=True)

    prepare(services, dataset, progress)
    print(f"indexed {len(subset)} passages in {time.perf_counter() - started:.0f} s")
    services.close()  # flush the embedded index: the server opens it next
    services.db.dispose()
    return eval_slug(dataset.name)


def cell_calls(cell: str, queries: list[str]) -> list[Call]:
    if cell == "query":
        return query_calls(queries)
    mode, _, rerank = cell.partition("+")
    return search_calls(queries, mode, rerank == "rerank")


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ragkb-concurrency-"))
    data_dir = work / "data"
    queries = scifact_queries(args.queries)
    rows: list[dict[str, Any]] = []
    try:
        slug = prepare_corpus(data_dir, args.passages)
        with running_server(data_dir) as server:
            key = server.tenant_key(slug, create=False, limits=UNLIMITED)
            headers = {"Authorization": f"Bearer {key}"}
            # Warm up: load the models, fill the caches, touch every code path.
            for cell in args.cells:
                closed_loop(server.base_url, headers, cell_calls(cell, queries[-20:]), 2, 2)
            for clients in args.clients:
                for cell in args.cells:
                    load = load_average()
                    samples = closed_loop(
                        server.base_url, headers, cell_calls(cell, queries), clients, args.duration
                    )
                    row = {
                        "cell": cell,
                        "clients": clients,
                        **samples.summary(args.duration),
                        "load_avg": load,
                    }
                    rows.append(row)
                    print(_row(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"rows": rows, "ratios": ratios(rows)}


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Within one concurrency: each cell's p50 and throughput against bm25 (no second
    stage), and the second stage's cost per mode."""
    out = []
    by = {(r["cell"], r["clients"]): r for r in rows}
    for (cell, clients), row in by.items():
        base = by.get(("bm25", clients))
        without = by.get((cell.split("+")[0], clients)) if "+rerank" in cell else None
        out.append(
            {
                "cell": cell,
                "clients": clients,
                "p50_vs_bm25": ratio(row["p50"], base["p50"]) if base else None,
                "rps_vs_bm25": ratio(row["ok_per_s"], base["ok_per_s"]) if base else None,
                "p50_rerank_vs_none": ratio(row["p50"], without["p50"]) if without else None,
                "rps_vs_1_client": ratio(row["ok_per_s"], by[(cell, 1)]["ok_per_s"])
                if (cell, 1) in by
                else None,
            }
        )
    return out


def _row(r: dict[str, Any]) -> str:
    bad = r["requests"] - r["ok"]
    return (
        f"| {r['cell']} | {r['clients']} | {r['p50']:.0f} | {r['p95']:.0f} | {r['p99']:.0f} "
        f"| {r['ok_per_s']:.1f} | {bad} | {r['load_avg']} |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds per cell.")
    parser.add_argument("--passages", type=int, default=2000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--cells", default=",".join(CELLS))
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",")]
    args.cells = [c for c in args.cells.split(",") if c]
    print(f"machine: {machine()}; load average {load_average()}")
    print("| cell | clients | p50 ms | p95 ms | p99 ms | ok/s | not ok | load avg |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    result = run(args)
    print("\n| cell | clients | p50 / bm25 | ok/s / bm25 | p50 rerank / none | ok/s / 1 client |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in result["ratios"]:
        print(
            f"| {r['cell']} | {r['clients']} | {r['p50_vs_bm25']} | {r['rps_vs_bm25']} "
            f"| {r['p50_rerank_vs_none'] or ''} | {r['rps_vs_1_client']} |"
        )
    result.update(duration_s=args.duration, passages=args.passages, load_avg_end=load_average())
    write_result("query_concurrency", result)
    hybrid = [r for r in result["rows"] if r["cell"] == "hybrid"]
    best = max(hybrid, key=lambda r: r["ok_per_s"]) if hybrid else None
    errors = sum(r["requests"] - r["ok"] for r in result["rows"])
    summary = f"query_concurrency: {len(result['rows'])} cells, {errors} not-ok answers"
    if best:
        summary += (
            f"; hybrid peak {best['ok_per_s']:.1f} req/s at {best['clients']} clients "
            f"(p95 {best['p95']:.0f} ms)"
        )
    print(summary + f"; load average {load_average()}")


if __name__ == "__main__":
    main()
