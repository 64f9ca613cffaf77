"""The documents an evaluation searches, in a tenant, and how to name them in judgements.

- A passage corpus (BEIR, SQuAD) is indexed as ``bench/scifact_retrieval.py`` did: one
  ready document and one chunk per passage (the title as its heading), through the real
  ``ChunkIndexer`` (embedding, BM25 statistics, index), without file parsing.
- A folder of files (SEC 10-Q PDFs) goes through the real ingestion pipeline, exactly as an
  upload does.
- An API run evaluates the tenant's own documents as they are.

Throw-away tenants are named ``eval-<data set>``; the corpus fingerprint (and the embedding
model and chunking settings) is kept in the tenant's display name, and an unchanged corpus
is reused rather than ingested again.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import tenants
from core.document_facts import HEADER_VERSION
from core.errors import NotFound
from core.models import Chunk, Document, DocumentStatus, Tenant
from core.settings import Settings
from core.tenancy import TenantScope, scope_for_slug, scoped, scoped_delete
from eval.datasets import Dataset, matches
from retrieval import bm25
from retrieval.search import searchable
from retrieval.tokenizer import TOKENIZER_VERSION
from services.container import Services

log = logging.getLogger("ragkb.eval")

Progress = Callable[[float, str], None]
_MARK = "eval corpus "


@dataclass
class Corpus:
    """The tenant searched, and for each of its documents the key judgements use (the
    passage id of a passage corpus, else the document id) and a name for people."""

    scope: TenantScope
    key_of: dict[str, str] = field(default_factory=dict)
    name_of: dict[str, str] = field(default_factory=dict)
    reused: bool = False

    def key(self, document_id: str) -> str:
        return self.key_of.get(document_id, document_id)


def eval_slug(dataset_name: str) -> str:
    return "eval-" + (re.sub(r"[^a-z0-9-]+", "-", dataset_name.lower()).strip("-") or "set")[:40]


def corpus_fingerprint(settings: Settings, dataset: Dataset) -> str:
    parts = (
        dataset.fingerprint(),
        settings.models.embedding_model,
        str(settings.ingest.chunk_max_tokens),
        str(settings.ingest.chunk_overlap_tokens),
        str(settings.retrieval.bm25_k1),
        str(settings.retrieval.bm25_b),
        f"tokenizer-{TOKENIZER_VERSION}",
        f"header-{HEADER_VERSION}",
    )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def eval_tenant(session: Session, dataset: Dataset) -> TenantScope:
    """The data set's throw-away tenant (created empty when missing)."""
    slug = eval_slug(dataset.corpus_name or dataset.name)
    try:
        return scope_for_slug(session, slug)
    except NotFound:
        tenant = tenants.create_tenant(session, slug, _MARK + "(empty)")
        return TenantScope.of(tenant)


def prepare(services: Services, dataset: Dataset, progress: Progress) -> Corpus:
    """The throw-away tenant for ``dataset`` with its corpus indexed (or reused)."""
    settings, db = services.settings, services.db
    slug = eval_slug(dataset.corpus_name or dataset.name)
    fingerprint = corpus_fingerprint(settings, dataset)
    with db.session() as session:
        try:
            scope = scope_for_slug(session, slug)
            tenant = session.get(Tenant, scope.tenant_id)
            assert tenant is not None
            if tenant.name != _MARK + fingerprint:
                log.info("corpus of %s changed: re-indexing", slug)
                _wipe(services, session, scope)
                tenant.name = _MARK + fingerprint
                reused = False
            else:
                reused = True
        except NotFound:
            tenant = tenants.create_tenant(session, slug, _MARK + fingerprint)
            scope = TenantScope.of(tenant)
            reused = False
    if dataset.kind == "passages":
        corpus = _index_passages(services, scope, dataset, progress)
    else:
        corpus = _ingest_files(services, scope, dataset, progress)
    corpus.reused = reused and corpus.reused
    return corpus


def tenant_corpus(session: Session, scope: TenantScope) -> Corpus:
    """A tenant's searchable documents as they are (API runs)."""
    stmt = searchable(
        scoped(select(Document.id, Document.filename), Document, scope).join(
            Chunk, Chunk.document_id == Document.id
        )
    ).distinct()
    names = {doc_id: filename for doc_id, filename in session.execute(stmt)}
    return Corpus(scope, {}, names, reused=True)


def judgements(dataset: Dataset, corpus: Corpus) -> dict[str, dict[str, int]]:
    """qrels keyed like :meth:`Corpus.key`: passages keep theirs; expected file names,
    globs or ids are matched against the tenant's documents."""
    if dataset.kind == "passages":
        return {q.id: dict(q.relevant) for q in dataset.queries}
    out: dict[str, dict[str, int]] = {}
    for q in dataset.queries:
        out[q.id] = {
            corpus.key(doc_id): 1
            for doc_id, filename in corpus.name_of.items()
            if q.expected and matches(q.expected, doc_id, filename)
        }
    return out


def _wipe(services: Services, session: Session, scope: TenantScope) -> None:
    services.indexer.vector_index.delete_tenant(scope)
    bm25.reset(session, scope)
    session.execute(scoped_delete(Chunk, scope))
    session.execute(scoped_delete(Document, scope))


def _index_passages(
    services: Services,
    scope: TenantScope,
    dataset: Dataset,
    progress: Progress,
) -> Corpus:
    indexer, db = services.indexer, services.db
    with db.session() as session:
        existing = {
            filename: doc_id
            for doc_id, filename in session.execute(
                scoped(select(Document.id, Document.filename), Document, scope).where(
                    Document.status == DocumentStatus.READY
                )
            )
        }
    wanted = {f"{pid}.txt": pid for pid in dataset.passages}
    missing = [pid for name, pid in wanted.items() if name not in existing]
    if missing:
        progress(0.0, f"indexing {len(missing)} passages")
        with db.session() as session:
            chunks: list[Chunk] = []
            for pid in missing:
                passage = dataset.passages[pid]
                doc = Document(
                    tenant_id=scope.tenant_id,
                    filename=f"{pid}.txt",
                    title=passage.title or None,
                    media_type="text/plain",
                    sha256=hashlib.sha256(passage.text.encode()).hexdigest(),
                    size_bytes=len(passage.text.encode()),
                    status=DocumentStatus.READY,
                    progress=1.0,
                    chunk_count=1,
                )
                session.add(doc)
                session.flush()
                existing[doc.filename] = doc.id
                chunks.append(
                    Chunk(
                        tenant_id=scope.tenant_id,
                        document_id=doc.id,
                        version=1,
                        ordinal=0,
                        text=passage.text,
                        heading_path=[passage.title] if passage.title else [],
                        char_start=0,
                        char_end=len(passage.text),
                    )
                )
            session.add_all(chunks)
            session.flush()
            indexer.index(
                scope, session, chunks, progress=lambda f: progress(f, "embedding passages")
            )
    progress(1.0, "corpus ready")
    key_of = {doc_id: name[: -len(".txt")] for name, doc_id in existing.items() if name in wanted}
    return Corpus(scope, key_of, {d: k for d, k in key_of.items()}, reused=not missing)


def _ingest_files(
    services: Services,
    scope: TenantScope,
    dataset: Dataset,
    progress: Progress,
) -> Corpus:
    from ingest.documents import add_document
    from ingest.pipeline import process_document

    if dataset.docs_dir is None:
        raise ValueError(f"data set {dataset.name} has no documents folder")
    settings, db = services.settings, services.db
    with db.session() as session:
        ready = set(
            session.scalars(
                scoped(select(Document.filename), Document, scope).where(
                    Document.status == DocumentStatus.READY
                )
            )
        )
    files = sorted(p for p in dataset.docs_dir.iterdir() if p.is_file())
    todo = [p for p in files if p.name not in ready]
    for n, path in enumerate(todo):
        progress(n / len(todo), f"ingesting {path.name}")
        with db.session() as session, path.open("rb") as handle:
            document_id = add_document(session, settings, scope, path.name, handle).document.id
        process_document(services, scope.tenant_id, document_id, final_attempt=True)
    progress(1.0, "corpus ready")
    with db.session() as session:
        corpus = tenant_corpus(session, scope)
    corpus.reused = not todo
    return corpus
