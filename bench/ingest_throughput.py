"""Ingestion throughput: the SEC 10-Q PDFs through ``ragkb ingest`` (the CLI, with its
progress bars), in a fresh embedded data directory; reports pages/s and chunks/s.

    .venv/bin/python bench/ingest_throughput.py [--limit N] [--docs DIR] [--parse-only]

``--parse-only`` times parsing and chunking alone (no embedding or indexing), in-process.
Results are printed and written to ``bench/results/ingest_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = REPO.parent / "shared" / "data" / "sec-10-q" / "docs"


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


def run_parse_only(files: list[Path]) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from core.settings import Settings
    from ingest.chunking import ChunkingOptions, chunk_elements
    from ingest.filetypes import detect
    from ingest.parsing import parse_file
    from ingest.tokens import get_tokenizer

    settings = Settings(_env_file=None)
    tokenizer = get_tokenizer(settings.embedding_model)
    options = ChunkingOptions(
        settings.chunk_max_tokens, settings.chunk_overlap_tokens, settings.chunk_min_tokens
    )
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
        print(
            f"{f.name}: {parsed.page_count} pages, {len(drafts)} chunks, "
            f"parse {t1 - t0:.1f}s, chunk {t2 - t1:.1f}s",
            flush=True,
        )
    seconds = parse_s + chunk_s
    return {
        "mode": "parse + chunk only",
        "documents": len(files),
        "pages": pages,
        "chunks": chunks,
        "parse_seconds": round(parse_s, 1),
        "chunk_seconds": round(chunk_s, 1),
        "pages_per_s": round(pages / seconds, 2),
        "chunks_per_s": round(chunks / seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS)
    parser.add_argument("--limit", type=int, default=0, help="Only the first N files.")
    parser.add_argument("--parse-only", action="store_true")
    args = parser.parse_args()
    if not args.docs.is_dir():
        raise SystemExit(f"no documents at {args.docs}")
    files = sorted(args.docs.glob("*.pdf"))
    if args.limit:
        files = files[: args.limit]
    result = run_parse_only(files) if args.parse_only else run_cli(files)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    print(json.dumps(result, indent=2))
    out = REPO / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    name = "ingest_parse_only.json" if args.parse_only else "ingest_throughput.json"
    (out / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
