"""Ingestion throughput: the SEC 10-Q PDFs through ``ragkb ingest`` (the CLI, with its
progress bars), in a fresh embedded data directory; reports pages/s and chunks/s.

    .venv/bin/python bench/ingest_throughput.py [--limit N] [--docs DIR] [--parse-only]
    .venv/bin/python bench/ingest_throughput.py --stages [--limit N]
    .venv/bin/python bench/ingest_throughput.py --scifact [--passages N]

``--parse-only`` times parsing and chunking alone (no embedding or indexing), in-process.
``--stages`` times parsing, chunking and embedding each (in-process; no index): embedding
sentences/s is the chunks (as the indexer embeds them: heading path + text) per second of
``DenseEmbedder.embed``. ``--scifact`` indexes SciFact abstracts (one document and one
chunk each, as ``eval.corpus`` does: SQL rows, embedding, BM25 statistics, index) in a
fresh data dir: chunks/s over the whole, and embedding sentences/s.
Results are printed and written to ``bench/results/``; the last line is a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, SHARED_DATA, load_average, machine, write_result

DEFAULT_DOCS = SHARED_DATA / "sec-10-q" / "docs"


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGKB_")}
    env.update(
        RAGKB_DATA_DIR=str(data_dir),
        RAGKB_LOG_JSON="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        DO_NOT_TRACK="1",
        SCARF_NO_ANALYTICS="1",
    )
    return env


def _ragkb(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-c", "from api.cli import app; app()", *args]
    return subprocess.run(command, cwd=REPO, env=env, check=False)


def run_cli(files: list[Path]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="ragkb-bench-"))
    try:
        env = _env(work / "data")
        inbox = work / "inbox"
        inbox.mkdir()
        for f in files:
            (inbox / f.name).symlink_to(f)
        for args in (("init",), ("tenants", "create", "bench")):
            if _ragkb(*args, env=env).returncode:
                raise SystemExit(f"ragkb {' '.join(args)} failed")
        started = time.perf_counter()
        code = _ragkb("ingest", str(inbox), "--tenant", "bench", env=env).returncode
        seconds = time.perf_counter() - started
        with sqlite3.connect(work / "data" / "ragkb.db") as conn:
            rows = conn.execute(
                "SELECT status, COALESCE(page_count, 0), chunk_count FROM documents"
            ).fetchall()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ready = [r for r in rows if r[0] == "ready"]
    pages = sum(r[1] for r in ready)
    chunks = sum(r[2] for r in ready)
    return {
        "mode": "cli (parse + chunk + embed + index)",
        "exit_code": code,
        "documents": len(rows),
        "ready": len(ready),
        "pages": pages,
        "chunks": chunks,
        "seconds": round(seconds, 1),
        "pages_per_s": round(pages / seconds, 2),
        "chunks_per_s": round(chunks / seconds, 2),
    }


class TimedEmbedder:
    """Wraps an embedder's ``embed``: counts texts and the seconds spent embedding them."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self.inner = embedder.embed
        self.texts = 0
        self.seconds = 0.0
        embedder.embed = self

    def __call__(self, texts: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.inner(texts)
        finally:
            self.seconds += time.perf_counter() - started
            self.texts += len(texts)

    def restore(self) -> None:
        self.embedder.embed = self.inner

    @property
    def per_s(self) -> float:
        return round(self.texts / self.seconds, 2) if self.seconds else 0.0


def run_parse_only(files: list[Path], embed: bool = False) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from core.settings import Settings
    from ingest.chunking import ChunkingOptions, chunk_elements
    from ingest.filetypes import detect
    from ingest.parsing import parse_file
    from ingest.tokens import get_tokenizer

    settings = Settings(_env_file=None)
    tokenizer = get_tokenizer(settings.models.embedding_model)
    options = ChunkingOptions.from_settings(settings)
    timed = None
    if embed:
        from retrieval.embedding import DenseEmbedder

        # Only the documents' embedder is timed here: no index, no database.
        embedder = DenseEmbedder(
            settings.models.embedding_model, settings.models.embedding_batch_size
        )
        embedder.embed(["warm up"])  # load the model outside the timing
        timed = TimedEmbedder(embedder)
    pages = chunks = 0
    parse_s = chunk_s = 0.0
    for f in files:
        t0 = time.perf_counter()
        parsed = parse_file(f, detect(f, f.name), f.name, settings)
        t1 = time.perf_counter()
        drafts = chunk_elements(parsed.elements, tokenizer, options)
        t2 = time.perf_counter()
        parse_s, chunk_s = parse_s + t1 - t0, chunk_s + t2 - t1
        pages += parsed.page_count or 0
        chunks += len(drafts)
        if timed is not None:
            texts = [
                f"{' > '.join(d.heading_path)}\n{d.text}" if d.heading_path else d.text
                for d in drafts
            ]
            for start in range(0, len(texts), 64):  # the indexer's step
                timed(texts[start : start + 64])
        print(
            f"{f.name}: {parsed.page_count} pages, {len(drafts)} chunks, "
            f"parse {t1 - t0:.1f}s, chunk {t2 - t1:.1f}s",
            flush=True,
        )
    seconds = parse_s + chunk_s + (timed.seconds if timed else 0.0)
    result = {
        "mode": "parse + chunk + embed, in process" if embed else "parse + chunk only",
        "documents": len(files),
        "pages": pages,
        "chunks": chunks,
        "parse_seconds": round(parse_s, 1),
        "chunk_seconds": round(chunk_s, 1),
        "pages_per_s": round(pages / seconds, 2),
        "chunks_per_s": round(chunks / seconds, 2),
    }
    if timed is not None:
        result.update(embed_seconds=round(timed.seconds, 1), embedding_sentences_per_s=timed.per_s)
    return result


def run_scifact(corpus: Path, passages: int) -> dict[str, Any]:
    """SciFact abstracts as one-chunk documents through ``eval.corpus.prepare``."""
    sys.path.insert(0, str(REPO))
    from core import db as database
    from core.settings import Settings
    from eval.corpus import prepare
    from eval.datasets import Dataset, load_beir
    from services.container import build_services

    scifact = load_beir(corpus)
    subset = dict(list(scifact.passages.items())[: passages or None])
    work = Path(tempfile.mkdtemp(prefix="ragkb-bench-scifact-"))
    try:
        settings = Settings(
            _env_file=None, storage={"data_dir": work / "data"}, observability={"log_json": False}
        )
        settings.ensure_dirs()
        database.upgrade(settings.sqlalchemy_url)
        services = build_services(settings)
        services.indexer.embedder.embed(["warm up"])  # load the model outside the timing
        timed = TimedEmbedder(services.indexer.embedder)
        started = time.perf_counter()
        prepare(services, Dataset("scifact", "passages", [], subset), lambda f, s: None)
        seconds = time.perf_counter() - started
        timed.restore()
        services.close()
        services.db.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "mode": "SciFact passages: SQL rows + embed + BM25 + index (eval.corpus.prepare)",
        "documents": len(subset),
        "chunks": len(subset),
        "seconds": round(seconds, 1),
        "chunks_per_s": round(len(subset) / seconds, 2),
        "embed_seconds": round(timed.seconds, 1),
        "embedding_sentences_per_s": timed.per_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--limit", type=int, default=0, help="Only the first N files.")
    parser.add_argument("--parse-only", action="store_true")
    parser.add_argument("--stages", action="store_true", help="Parse, chunk, embed timed each.")
    parser.add_argument("--scifact", action="store_true", help="SciFact passages instead.")
    parser.add_argument("--scifact-data", type=Path, default=SHARED_DATA / "scifact")
    parser.add_argument("--passages", type=int, default=0, help="Only the first N passages.")
    args = parser.parse_args()
    load_before = load_average()
    if args.scifact:
        result = run_scifact(args.scifact_data, args.passages)
        name = "ingest_scifact"
    else:
        if not args.docs.is_dir():
            raise SystemExit(f"no documents at {args.docs}")
        files = sorted(args.docs.glob("*.pdf"))
        if args.limit:
            files = files[: args.limit]
        if args.parse_only or args.stages:
            result = run_parse_only(files, embed=args.stages)
            name = "ingest_stages" if args.stages else "ingest_parse_only"
        else:
            result = run_cli(files)
            name = "ingest_throughput"
    result.update(load_avg_before=load_before, load_avg_after=load_average(), machine=machine())
    print(json.dumps(result, indent=2))
    write_result(name, result)
    rates = [
        f"{result[k]} {label}"
        for k, label in (
            ("pages_per_s", "pages/s"),
            ("chunks_per_s", "chunks/s"),
            ("embedding_sentences_per_s", "embedding sentences/s"),
        )
        if k in result
    ]
    print(
        f"ingest_throughput ({result['mode']}): {result['documents']} documents, "
        f"{result['chunks']} chunks: {', '.join(rates)}; load average {result['load_avg_after']}"
    )


if __name__ == "__main__":
    main()
