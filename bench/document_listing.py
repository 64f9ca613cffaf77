"""Latency of one page of ``GET /v1/documents`` (``ingest.documents.list_documents``) for a
tenant with many documents, beside the way it worked before: every row loaded and the tag
filter and paging done in Python. Both run on the same database in the same process.

    .venv/bin/python bench/document_listing.py [--documents 900] [--repeat 60] [--pg]

SQLite by default (a throw-away file); ``--pg`` uses a throw-away PostgreSQL database.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select
from sqlalchemy.orm import Session

from bench.common import load_average, machine, throwaway_postgres, write_result
from core import db as database
from core import tenants
from core.models import Document, DocumentStatus
from core.tenancy import TenantScope, scoped
from ingest.documents import list_documents

Lister = Callable[..., tuple[list[Document], int]]


def list_in_python(
    session: Session, scope: TenantScope, *, tag: str | None = None, limit: int = 50
) -> tuple[list[Document], int]:
    """The listing before it moved into SQL (the baseline)."""
    stmt = scoped(select(Document), Document, scope)
    rows = list(session.scalars(stmt.order_by(Document.created_at.desc(), Document.id)))
    if tag is not None:
        rows = [d for d in rows if tag in (d.tags or [])]
    return rows[:limit], len(rows)


def fill(db: database.Database, documents: int) -> TenantScope:
    with db.session() as session:
        tenant = tenants.create_tenant(session, "many-documents")
        for i in range(documents):
            session.add(
                Document(
                    tenant_id=tenant.id,
                    filename=f"report-{i}.pdf",
                    sha256=f"{i:064d}",
                    tags=["hr"] if i % 3 == 0 else ["finance"],
                    status=DocumentStatus.READY,
                )
            )
        return TenantScope.of(tenant)


def measure(
    db: database.Database, scope: TenantScope, lister: Lister, tag: str | None, n: int
) -> tuple[int, float, float]:
    times = []
    for _ in range(n):
        with db.session() as session:
            started = time.perf_counter()
            _, total = lister(session, scope, tag=tag)
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return total, statistics.median(times), times[int(0.95 * (len(times) - 1))]


@contextmanager
def _migrated_sqlite(folder: Path) -> Iterator[str]:
    url = f"sqlite:///{folder}/listing.db"
    database.upgrade(url)
    yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=900)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--pg", action="store_true", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        context: AbstractContextManager[str] = (
            throwaway_postgres() if args.pg else _migrated_sqlite(Path(folder))
        )
        with context as url:
            db = database.Database(url)
            scope = fill(db, args.documents)
            rows: list[dict[str, Any]] = []
            for name, lister in (("python", list_in_python), ("sql", list_documents)):
                for tag in (None, "hr"):
                    total, p50, p95 = measure(db, scope, lister, tag, args.repeat)
                    rows.append(
                        {"way": name, "tag": tag, "total": total, "p50_ms": p50, "p95_ms": p95}
                    )
            db.dispose()
    engine = "postgresql" if args.pg else "sqlite"
    print(f"{machine()}; load average {load_average()}; {engine}, {args.documents} documents")
    print("| listing | tag filter | matching | p50 ms | p95 ms |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['way']} | {r['tag'] or '-'} | {r['total']} | {r['p50_ms']:.2f} | "
            f"{r['p95_ms']:.2f} |"
        )
    by = {(r["way"], r["tag"]): r for r in rows}
    speedup = by[("python", None)]["p50_ms"] / by[("sql", None)]["p50_ms"]
    write_result("document_listing", {"engine": engine, "rows": rows, "speedup_p50": speedup})
    print(
        f"document_listing ({engine}, {args.documents} docs): SQL paging {speedup:.1f}x faster "
        "at p50 than loading every row"
    )


if __name__ == "__main__":
    main()
