"""The outcome of parsing and chunking each file of ``../shared/data/docs``: the table in
``tests/support/fixtures/shared_docs_outcomes.tsv`` is written by running this module
(``python -m tests.support.ingest_corpus``) and asserted by ``tests/ingest/test_corpus.py``."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.errors import RagkbError
from core.settings import Settings
from ingest.chunking import ChunkingOptions, chunk_elements, extracted_text
from ingest.errors import DocumentRejected
from ingest.filetypes import detect
from ingest.parsing import parse_file
from ingest.tokens import get_tokenizer
from tests.support.helpers import FIXTURE_DIR, SHARED_DATA

DOCS = SHARED_DATA / "docs"
FIXTURE = FIXTURE_DIR / "shared_docs_outcomes.tsv"
COLUMNS = ["path", "type", "outcome", "pages", "chunks", "paged_chunks", "headed_chunks", "reason"]


@dataclass
class Outcome:
    path: str
    type: str
    outcome: str  # ok, failed or unsupported
    pages: int | None = None
    chunks: int = 0
    paged_chunks: int = 0  # chunks that carry a page number
    headed_chunks: int = 0  # chunks that carry a heading path
    reason: str = ""
    seconds: float = 0.0

    def row(self) -> list[str]:
        return [
            self.path,
            self.type,
            self.outcome,
            "" if self.pages is None else str(self.pages),
            str(self.chunks),
            str(self.paged_chunks),
            str(self.headed_chunks),
            self.reason.replace("\t", " ").replace("\n", " ")[:160],
        ]


def corpus_files() -> list[Path]:
    return sorted(
        p for p in DOCS.rglob("*") if p.is_file() and p.name not in {"LISTING.tsv", "LICENSE.md"}
    )


def outcome_of(path: Path, settings: Settings) -> Outcome:
    name = str(path.relative_to(DOCS))
    started = time.perf_counter()
    if path.stat().st_size == 0:
        return Outcome(name, "EMPTY", "unsupported", reason="empty file (422)")
    try:
        detected = detect(path, path.name)
    except RagkbError as exc:
        return Outcome(name, "-", "unsupported", reason=exc.message.split(": ", 1)[-1])
    try:
        parsed = parse_file(path, detected, path.name, settings)
    except DocumentRejected as exc:
        return Outcome(name, detected.name, "failed", reason=str(exc))
    options = ChunkingOptions.from_settings(settings)
    chunks = chunk_elements(
        parsed.elements, get_tokenizer(settings.models.embedding_model), options
    )
    text = extracted_text(parsed.elements)
    for chunk in chunks:  # exact slices, but for tables that repeat a header or a caption
        if not (chunk.extra.get("table_header_repeated") or chunk.extra.get("table_caption")):
            assert text[chunk.char_start : chunk.char_end] == chunk.text, (name, chunk.ordinal)
    return Outcome(
        name,
        detected.name,
        "ok" if chunks else "failed",
        pages=parsed.page_count,
        chunks=len(chunks),
        paged_chunks=sum(1 for c in chunks if c.page_start is not None),
        headed_chunks=sum(1 for c in chunks if c.heading_path),
        reason="" if chunks else "no chunks",
        seconds=time.perf_counter() - started,
    )


def main() -> None:
    settings = Settings(_env_file=None)
    rows = ["\t".join(COLUMNS)]
    for path in corpus_files():
        result = outcome_of(path, settings)
        print(
            f"{result.seconds:6.1f}s {result.outcome:11s} {result.type:6s} {result.path}",
            result.reason[:90],
            file=sys.stderr,
            flush=True,
        )
        rows.append("\t".join(result.row()))
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text("\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
