"""Load (issue #9): questions and uploads at once for a fixed time, on PostgreSQL and Redis;
errors must be 0 and the server's memory must not keep growing.

    .venv/bin/python bench/load_test.py [--duration 120] [--query-clients 8] [--uploaders 2]
        [--passages 500]

A throw-away PostgreSQL database on the local server (created, migrated, dropped after),
the rate limiter in the local Redis (keys ``ragkb:rl:`` + the fresh tenant's random id),
the embedded index and in-process ingestion in a throw-away data dir. A tenant gets the
first ``--passages`` SciFact abstracts indexed first (so questions have something to find);
then ``ragkb serve`` runs on loopback and, for ``--duration`` seconds, ``--query-clients``
closed-loop clients ask SciFact claims on ``/v1/query`` while ``--uploaders`` clients each
upload a real file (small files of ``../shared/data/docs`` that parse, and SEC 10-Q PDFs),
poll it until it is ready or failed, and upload the next.

Counted as errors: any query answer other than 200, any upload answer other than 202, a
status poll other than 200, a document that ends failed, a document not ready 60 s after
the run. The server's RSS is sampled every second; its slope over the last half of the
run says whether memory keeps growing. ``tests/system/test_load.py`` runs a short form.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    REPO,
    SHARED_DATA,
    UNLIMITED,
    RssSampler,
    closed_loop,
    load_average,
    machine,
    query_calls,
    running_server,
    scifact_queries,
    throwaway_postgres,
    write_result,
)

REDIS_URL = "redis://127.0.0.1:6379/0"
OUTCOMES = REPO / "tests" / "support" / "fixtures" / "shared_docs_outcomes.tsv"


def upload_files(max_bytes: int = 200_000, sec_pdfs: int = 2) -> list[Path]:
    """Files that parse (``ok`` in the shared corpus's outcome table) up to ``max_bytes``,
    with ``sec_pdfs`` SEC 10-Q PDFs spread among them."""
    docs = SHARED_DATA / "docs"
    with OUTCOMES.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    small = [
        docs / r["path"]
        for r in rows
        if r["outcome"] == "ok" and 0 < (docs / r["path"]).stat().st_size <= max_bytes
    ]
    pdfs = sorted((SHARED_DATA / "sec-10-q" / "docs").glob("*.pdf"), key=lambda p: p.stat().st_size)
    out = list(small)
    for n, pdf in enumerate(pdfs[:sec_pdfs]):
        out.insert((n + 1) * len(small) // (sec_pdfs + 1), pdf)
    return out


@dataclass
class UploadLog:
    uploads: int = 0
    ready: int = 0
    duplicates: int = 0
    deleted: int = 0
    seconds_to_ready: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def uploader(
    base_url: str,
    headers: dict[str, str],
    files: list[Path],
    deadline: float,
    log: UploadLog,
    lock: threading.Lock,
    settle_s: float = 60.0,
    churn: bool = False,
) -> None:
    """Upload, wait for ready (or failed), repeat until ``deadline``; the document in
    flight at the deadline gets ``settle_s`` more to finish. ``churn``: delete each
    document once it is ready and start over when the files run out (a steady state for
    long runs: the tenant does not grow, and every upload is ingested again)."""
    with httpx.Client(base_url=base_url, headers=headers, timeout=120) as http:
        for path in itertools.cycle(files) if churn else files:
            if time.monotonic() >= deadline:
                return
            started = time.monotonic()
            try:
                with path.open("rb") as handle:
                    response = http.post("/v1/documents", files={"files": (path.name, handle)})
            except httpx.HTTPError as exc:
                with lock:
                    log.errors.append(f"upload {path.name}: {exc!r}")
                continue
            if response.status_code != 202 or not response.json()["documents"]:
                with lock:
                    log.errors.append(
                        f"upload {path.name}: {response.status_code} {response.text[:200]}"
                    )
                continue
            document = response.json()["documents"][0]
            with lock:
                log.uploads += 1
                log.duplicates += int(document["duplicate"])
            if churn and document["duplicate"]:
                # The same bytes as a document the other uploader holds (and will delete).
                continue
            status = _wait_done(http, document["id"], max(deadline, time.monotonic()) + settle_s)
            with lock:
                if status == "ready":
                    log.ready += 1
                    log.seconds_to_ready.append(round(time.monotonic() - started, 1))
                else:
                    log.errors.append(f"{path.name}: {status}")
            if churn:
                try:
                    gone = http.delete(f"/v1/documents/{document['id']}")
                    problem = None if gone.status_code == 204 else gone.text[:200]
                except httpx.HTTPError as exc:
                    problem = repr(exc)
                if problem:
                    with lock:
                        log.errors.append(f"delete {path.name}: {problem}")
                else:
                    with lock:
                        log.deleted += 1


def _wait_done(http: httpx.Client, document_id: str, until: float) -> str:
    while time.monotonic() < until:
        try:
            response = http.get(f"/v1/documents/{document_id}")
        except httpx.HTTPError as exc:
            return f"status poll failed: {exc!r}"
        if response.status_code != 200:
            return f"status poll {response.status_code}: {response.text[:200]}"
        body = response.json()
        if body["status"] == "ready":
            return "ready"
        if body["status"] == "failed":
            return f"failed: {body['error']}"
        time.sleep(0.5)
    return "not ready in time"


def run_load(
    work: Path,
    *,
    duration_s: float,
    query_clients: int,
    uploaders: int,
    passages: int,
    files: list[Path] | None = None,
    churn: bool = False,
) -> dict[str, Any]:
    """The load run (see the module docstring); the result has ``errors`` (the count),
    the query latencies, the uploads and the RSS summary."""
    from bench.query_concurrency import prepare_corpus

    data_dir = work / "data"
    files = files if files is not None else upload_files()
    queries = scifact_queries()
    with throwaway_postgres() as url:
        slug = "bench-load"
        if passages:
            slug = prepare_corpus(data_dir, passages, slug, database_url=url)
        with running_server(data_dir, database_url=url, redis_url=REDIS_URL) as server:
            key = server.tenant_key(slug, create=not passages, limits=UNLIMITED)
            headers = {"Authorization": f"Bearer {key}"}
            closed_loop(server.base_url, headers, query_calls(queries[-10:]), 1, 3)  # warm up
            log, lock = UploadLog(), threading.Lock()
            load_before = load_average()
            with RssSampler(server.pid) as rss:
                deadline = time.monotonic() + duration_s
                threads = [
                    threading.Thread(
                        target=uploader,
                        args=(server.base_url, headers, files[n::uploaders], deadline, log, lock),
                        kwargs={"churn": churn},
                        daemon=True,
                    )
                    for n in range(uploaders)
                ]
                for t in threads:
                    t.start()
                samples = closed_loop(
                    server.base_url,
                    headers,
                    query_calls(queries),
                    query_clients,
                    duration_s,
                    60.0,
                    _check_answer,
                )
                for t in threads:
                    t.join()
            server_alive = server.process.poll() is None
    query = samples.summary(duration_s)
    query_errors = query["requests"] - query["ok"]
    return {
        "duration_s": duration_s,
        "query_clients": query_clients,
        "uploaders": uploaders,
        "churn": churn,
        "errors": query_errors + len(log.errors) + (0 if server_alive else 1),
        "query": query,
        "uploads": {
            "uploads": log.uploads,
            "ready": log.ready,
            "duplicates": log.duplicates,
            "deleted": log.deleted,
            "median_s_to_ready": sorted(log.seconds_to_ready)[len(log.seconds_to_ready) // 2]
            if log.seconds_to_ready
            else None,
            "errors": log.errors[:10],
        },
        # Over the load itself (the uploads' settling after it is sampled too).
        "rss": rss.summary(until_s=duration_s),
        "rss_with_settling": rss.summary(),
        "rss_samples": [(round(t, 1), round(m, 1)) for t, m in rss.samples],
        "load_avg_before": load_before,
        "load_avg_after": load_average(),
    }


def _check_answer(response: httpx.Response) -> str | None:
    body = response.json()
    return None if "answer" in body else f"no answer in {response.text[:200]}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="Seconds of load.")
    parser.add_argument("--query-clients", type=int, default=8)
    parser.add_argument("--uploaders", type=int, default=2)
    parser.add_argument("--passages", type=int, default=500)
    parser.add_argument(
        "--churn",
        action="store_true",
        help="Delete each document once ready and cycle through the files (long runs).",
    )
    args = parser.parse_args(argv)
    print(f"machine: {machine()}; load average {load_average()}")
    work = Path(tempfile.mkdtemp(prefix="ragkb-load-"))
    try:
        result = run_load(
            work,
            duration_s=args.duration,
            query_clients=args.query_clients,
            uploaders=args.uploaders,
            passages=args.passages,
            churn=args.churn,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_result("load_test_churn" if args.churn else "load_test", result)
    q, u, rss = result["query"], result["uploads"], result["rss"]
    print(
        f"queries: {q['requests']} ({q['ok_per_s']}/s ok), p50 {q['p50']} ms, p95 {q['p95']} ms, "
        f"p99 {q['p99']} ms, status {q['status']}"
    )
    print(f"uploads: {u}")
    print(f"rss: {rss}")
    print(
        f"load_test: {args.duration:.0f} s, {args.query_clients} query clients + "
        f"{args.uploaders} uploaders on PostgreSQL + Redis: {result['errors']} errors, "
        f"query p95 {q['p95']:.0f} ms, {u['ready']} documents ready, RSS "
        f"{rss.get('rss_start_mib')} -> {rss.get('rss_end_mib')} MiB (peak "
        f"{rss.get('rss_peak_mib')}), slope over the last half "
        f"{rss.get('rss_slope_last_half_mib_per_min')} MiB/min; load average "
        f"{result['load_avg_after']}"
    )


if __name__ == "__main__":
    main()
