"""BM25 with per-tenant statistics, split between the index and the database.

BM25(q, d) = sum over query terms t of
    idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl)).

The document half (the term-frequency factor, with the tenant's average length when the
chunk is indexed) is stored as the chunk's sparse vector; the query half (idf from the
tenant's own document frequencies, times the term's count in the query) is the query's
sparse vector, so the index's sparse dot product *is* the BM25 score. Qdrant's built-in
IDF modifier is not used: it counts the whole collection, i.e. every tenant.

Term ids are a stable 32-bit hash of the term: no vocabulary table to keep in sync, and a
collision merely merges two rare terms.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.models import Bm25CorpusStat, Bm25TermStat
from core.tenancy import TenantScope, scoped, scoped_delete
from retrieval.tokenizer import tokenize

# Rows per INSERT ... ON CONFLICT statement (SQLite allows 32k bound parameters).
_UPSERT_BATCH = 2000


def term_id(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


@dataclass(frozen=True, slots=True)
class SparseVec:
    indices: list[int]
    values: list[float]

    def dot(self, other: SparseVec) -> float:
        weights = dict(zip(self.indices, self.values, strict=True))
        pairs = zip(other.indices, other.values, strict=True)
        return sum(weights.get(i, 0.0) * v for i, v in pairs)

    def __bool__(self) -> bool:
        return bool(self.indices)


@dataclass(frozen=True, slots=True)
class TermCounts:
    """A chunk's analysed text: term id -> count, and its length in terms."""

    counts: Mapping[int, int]
    length: int

    @classmethod
    def of(cls, text: str) -> TermCounts:
        terms = tokenize(text)
        return cls(Counter(term_id(t) for t in terms), len(terms))


@dataclass(frozen=True, slots=True)
class CorpusStats:
    doc_count: int
    total_length: int

    @property
    def avg_length(self) -> float:
        return self.total_length / self.doc_count if self.doc_count else 1.0


def document_vector(terms: TermCounts, avg_length: float, k1: float, b: float) -> SparseVec:
    """The term-frequency half of BM25 for one chunk."""
    norm = k1 * (1.0 - b + b * terms.length / max(avg_length, 1e-9))
    items = sorted(terms.counts.items())
    return SparseVec(
        [term for term, _ in items], [tf * (k1 + 1.0) / (tf + norm) for _, tf in items]
    )


def idf(doc_count: int, df: int) -> float:
    # The always-positive form (Lucene's): BM25Okapi's raw log((N-df+.5)/(df+.5)) goes negative
    # for terms in over half the chunks, and ranks identically otherwise to within rounding.
    return math.log(1.0 + (doc_count - df + 0.5) / (df + 0.5))


def query_vector(session: Session, scope: TenantScope, text: str) -> SparseVec:
    """The query half of BM25, weighted by the tenant's own IDF; empty if no term is known."""
    counts = Counter(term_id(t) for t in tokenize(text))
    if not counts:
        return SparseVec([], [])
    stats = corpus_stats(session, scope)
    dfs = document_frequencies(session, scope, counts)
    items = sorted((t, c) for t, c in counts.items() if dfs.get(t, 0) > 0)
    return SparseVec([t for t, _ in items], [c * idf(stats.doc_count, dfs[t]) for t, c in items])


# --- the tenant's statistics in the database ----------------------------------------------


def corpus_stats(session: Session, scope: TenantScope) -> CorpusStats:
    row = session.get(Bm25CorpusStat, scope.tenant_id)
    if row is None:
        return CorpusStats(0, 0)
    return CorpusStats(row.doc_count, row.total_length)


def document_frequencies(
    session: Session, scope: TenantScope, term_ids: Iterable[int]
) -> dict[int, int]:
    ids = list(term_ids)
    found: dict[int, int] = {}
    for start in range(0, len(ids), _UPSERT_BATCH):
        stmt = scoped(select(Bm25TermStat.term_id, Bm25TermStat.df), Bm25TermStat, scope).where(
            Bm25TermStat.term_id.in_(ids[start : start + _UPSERT_BATCH])
        )
        found.update({term: df for term, df in session.execute(stmt)})
    return found


def apply_delta(
    session: Session,
    scope: TenantScope,
    df_delta: Mapping[int, int],
    doc_delta: int,
    length_delta: int,
) -> None:
    """Add (or, with negative numbers, remove) chunks' contributions to the tenant's stats.

    Increments happen in SQL (``df = df + n``), so concurrent indexers of one tenant never
    lose each other's updates.
    """
    # Sorted: concurrent transactions then lock rows in one order and cannot deadlock.
    changes = sorted((term, n) for term, n in df_delta.items() if n)
    insert = _insert_for(session)
    for start in range(0, len(changes), _UPSERT_BATCH):
        rows = [
            {"tenant_id": scope.tenant_id, "term_id": term, "df": n}
            for term, n in changes[start : start + _UPSERT_BATCH]
        ]
        stmt = insert(Bm25TermStat).values(rows)
        stmt = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "term_id"],
            set_={"df": Bm25TermStat.df + stmt.excluded.df},
        )
        session.execute(stmt)
    if any(n < 0 for _, n in changes):
        session.execute(scoped_delete(Bm25TermStat, scope).where(Bm25TermStat.df <= 0))
    if doc_delta or length_delta:
        stmt_c = insert(Bm25CorpusStat).values(
            tenant_id=scope.tenant_id, doc_count=doc_delta, total_length=length_delta
        )
        stmt_c = stmt_c.on_conflict_do_update(
            index_elements=["tenant_id"],
            set_={
                "doc_count": Bm25CorpusStat.doc_count + stmt_c.excluded.doc_count,
                "total_length": Bm25CorpusStat.total_length + stmt_c.excluded.total_length,
            },
        )
        session.execute(stmt_c)
    session.flush()


def reset(session: Session, scope: TenantScope) -> None:
    """Forget the tenant's statistics (before a rebuild from the chunks table)."""
    session.execute(scoped_delete(Bm25TermStat, scope))
    session.execute(scoped_delete(Bm25CorpusStat, scope))


def _insert_for(session: Session) -> type[sqlite.Insert] | type[postgresql.Insert]:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.Insert
    if dialect == "sqlite":
        return sqlite.Insert
    raise NotImplementedError(f"BM25 statistics need PostgreSQL or SQLite, not {dialect}")
