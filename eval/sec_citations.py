"""Citation accuracy on the SEC 10-Q set: does `ragkb ask` cite the right filing?

For each question of ``qna_data_mini.csv`` (docugami KG-RAG, MIT licence) the question is
asked exactly as ``ragkb ask`` asks it, through the one answer path
(``services.answering``: search, then the configured generator streaming: the embedded
extractive one unless ``RAGKB_LLM_BASE_URL`` is set), without logging it, and each cited
filename is matched against the question's "Source Docs" glob (``*AAPL*``,
``*2023 Q3 INTC*``).

A question counts as correct when it has at least one citation and *every* cited filing
matches (strict); the report also gives the share whose first citation matches, whose
citations match at least once, and the precision over all citations.

The 20 filings are ingested once into a tenant of the data directory given (reused on the
next run)::

    python -m eval.sec_citations --data-dir /tmp/ragkb-sec [--limit 3] [--out report.json]
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import db as database
from core import tenants
from core.errors import NotFound
from core.model_loading import force_offline
from core.models import Document, DocumentStatus
from core.settings import Settings
from core.tenancy import TenantScope, scope_for_slug, scoped
from generation.answer import AnswerResult
from services.answering import Question, answer
from services.container import Services, build_services

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sec-10-q"
TENANT = "sec-10q"


@dataclass
class QuestionResult:
    question: str
    source_docs: str
    cited: list[str]
    pages: list[str]
    strict: bool
    first: bool
    any: bool
    refused: bool
    answer: str
    seconds: float


@dataclass
class Report:
    questions: int
    strict_accuracy: float
    first_citation_accuracy: float
    any_citation_accuracy: float
    citation_precision: float
    refused: int
    median_seconds: float
    generator: str
    settings: dict[str, Any]
    results: list[QuestionResult] = field(default_factory=list)


def load_questions(path: Path) -> list[tuple[str, list[str]]]:
    """(question, filename globs) per row; "Source Docs" may hold several, comma-separated."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = []
    for row in rows:
        globs = [g.strip() for g in row["Source Docs"].replace("\n", ",").split(",") if g.strip()]
        out.append((row["Question"].strip(), globs))
    return out


def matches(filename: str, globs: list[str]) -> bool:
    stem = filename.rsplit(".", 1)[0]
    return any(fnmatch.fnmatch(stem, g) or fnmatch.fnmatch(filename, g) for g in globs)


def ensure_corpus(services: Services, docs: Path) -> TenantScope:
    """The eval tenant with every filing ingested (only missing ones are processed), through
    the same calls an upload makes: ``add_document`` then the pipeline's task body."""
    from ingest.documents import add_document
    from ingest.pipeline import process_document

    settings, db = services.settings, services.db
    with db.session() as session:
        try:
            tenants.get_tenant(session, TENANT)
        except NotFound:
            tenants.create_tenant(session, TENANT, "SEC 10-Q eval")
    with db.session() as session:
        scope = scope_for_slug(session, TENANT)
        ready = set(
            session.scalars(
                scoped(select(Document.filename), Document, scope).where(
                    Document.status == DocumentStatus.READY
                )
            )
        )
    for path in sorted(p for p in docs.glob("*.pdf") if p.name not in ready):
        started = time.perf_counter()
        with db.session() as session, path.open("rb") as handle:
            document_id = add_document(session, settings, scope, path.name, handle).document.id
        status = process_document(services, scope.tenant_id, document_id, final_attempt=True)
        seconds = time.perf_counter() - started
        print(f"ingested {path.name}: {status} in {seconds:.0f}s", file=sys.stderr, flush=True)
    return scope


def ask(
    services: Services, session: Session, scope: TenantScope, question: str, top_k: int
) -> AnswerResult:
    """What ``ragkb ask`` does (minus printing and the query log)."""
    asked = Question(text=question, top_k=top_k)
    return answer(services, session, scope, asked, stream=True, record=False).result


def evaluate(
    settings: Settings, csv_path: Path, docs: Path, *, top_k: int, limit: int | None
) -> Report:
    force_offline()
    settings.ensure_dirs()
    database.upgrade(settings.sqlalchemy_url)
    db = database.Database.from_settings(settings)
    services = build_services(settings, db)
    results: list[QuestionResult] = []
    try:
        scope = ensure_corpus(services, docs)
        with db.session() as session:
            for question, globs in load_questions(csv_path)[:limit]:
                started = time.perf_counter()
                result = ask(services, session, scope, question, top_k)
                cited = [c.filename for c in result.citations]
                hits = [matches(name, globs) for name in cited]
                results.append(
                    QuestionResult(
                        question=question,
                        source_docs=", ".join(globs),
                        cited=cited,
                        pages=[
                            f"{c.page_start}" if c.page_start is not None else ""
                            for c in result.citations
                        ],
                        strict=bool(hits) and all(hits),
                        first=bool(hits) and hits[0],
                        any=any(hits),
                        refused=result.refused,
                        answer=result.answer,
                        seconds=round(time.perf_counter() - started, 2),
                    )
                )
    finally:
        services.close()
        db.dispose()
    n = len(results) or 1
    all_hits = [matches(c, r.source_docs.split(", ")) for r in results for c in r.cited]
    return Report(
        questions=len(results),
        strict_accuracy=sum(r.strict for r in results) / n,
        first_citation_accuracy=sum(r.first for r in results) / n,
        any_citation_accuracy=sum(r.any for r in results) / n,
        citation_precision=sum(all_hits) / len(all_hits) if all_hits else 0.0,
        refused=sum(r.refused for r in results),
        median_seconds=statistics.median(r.seconds for r in results) if results else 0.0,
        generator=services.generator.name,
        settings={
            "top_k": top_k,
            "embedding_model": settings.models.embedding_model,
            "rerank_model": settings.models.rerank_model,
            "llm_base_url": settings.llm.base_url,
            "extractive_max_sentences": settings.answer.extractive_max_sentences,
        },
        results=results,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, required=True, help="ragkb data directory")
    parser.add_argument("--csv", type=Path, default=DATA / "qna_data_mini.csv")
    parser.add_argument("--docs", type=Path, default=DATA / "docs")
    parser.add_argument("--top-k", type=int, default=12)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    if not args.csv.exists():
        print(f"dataset not found: {args.csv}", file=sys.stderr)
        return 2
    settings = Settings(storage={"data_dir": args.data_dir})
    report = evaluate(settings, args.csv, args.docs, top_k=args.top_k, limit=args.limit)
    for r in report.results:
        mark = "ok " if r.strict else ("~  " if r.any else "no ")
        print(f"{mark} [{r.source_docs}] {r.question[:70]}")
        print(f"      cited: {', '.join(sorted(set(r.cited))) or '-'}")
    print(
        f"\n{report.questions} questions, generator {report.generator}: "
        f"strict {report.strict_accuracy:.0%}, "
        f"first citation {report.first_citation_accuracy:.0%}, "
        f"any {report.any_citation_accuracy:.0%}, citation precision "
        f"{report.citation_precision:.0%}, refused {report.refused}, "
        f"median {report.median_seconds:.1f}s per question"
    )
    if args.out:
        args.out.write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
