"""SQLAlchemy 2.0 ORM models: SQL is the source of truth (DESIGN.md section 4).

One migration set must run unchanged on PostgreSQL and SQLite, hence: a constraint
naming convention, portable types (string UUIDs, non-native enums, JSON that becomes
JSONB on PostgreSQL) and timezone-aware datetimes normalised to UTC on read.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON everywhere, JSONB on PostgreSQL (indexable, compact).
PortableJSON = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetime; SQLite returns naive values, which we read as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class KeyRole(enum.StrEnum):
    TENANT = "tenant"
    ADMIN = "admin"


class DocumentStatus(enum.StrEnum):
    QUEUED = "queued"
    PARSING = "parsing"
    CHUNKING = "chunking"
    EMBEDDING = "embedding"
    INDEXING = "indexing"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Per-tenant overrides of the default limits and quotas (see core.limits.TenantLimits).
    limits: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict, server_default="{}")
    # The embedding model (its collection-safe name) that embedded the tenant's vectors; set
    # by the first indexing. Indexing or searching with another one is refused until a
    # reindex (`ragkb reindex`) re-embeds every chunk: vectors of two models never mix.
    embedding_model: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )

    # Deleting a tenant deletes its keys (never orphans them into tenant-less keys).
    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="tenant", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiKey(Base):
    """A hashed API key. Admin keys have no tenant; tenant keys belong to exactly one."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[KeyRole] = mapped_column(
        Enum(KeyRole, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    name: Mapped[str] = mapped_column(String(255), default="")
    # The visible part of the key ("rk_<prefix>_..."): finds the row without the secret.
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tenant: Mapped[Tenant | None] = relationship(back_populates="api_keys")


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        Index("ix_documents_tenant_sha256", "tenant_id", "sha256"),
        Index("ix_documents_tenant_filename", "tenant_id", "filename"),
        Index("ix_documents_tenant_status", "tenant_id", "status"),
        # Covers the per-search check of whether a tenant's ready documents changed
        # (``retrieval.document_match``): count and newest update without table reads.
        Index("ix_documents_tenant_status_updated", "tenant_id", "status", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(1024))
    title: Mapped[str | None] = mapped_column(String(1024))
    media_type: Mapped[str] = mapped_column(String(255), default="application/octet-stream")
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    storage_path: Mapped[str] = mapped_column(String(2048), default="")
    version: Mapped[int] = mapped_column(Integer, default=1)
    tags: Mapped[list[str]] = mapped_column(PortableJSON, default=list)
    status: Mapped[DocumentStatus] = mapped_column(
        Enum(
            DocumentStatus,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=DocumentStatus.QUEUED,
    )
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    page_count: Mapped[int | None] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    # Last sign of life from the worker; the reaper requeues documents whose heartbeat stops.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Times processing started (a claim); the reaper queues an interrupted document again
    # until this reaches ingest_max_attempts, then fails it.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # What the parser learnt about the document outside its content: "running_headers"
    # (text repeated at the top or bottom of its pages) and "page_labels" (printed numbers).
    context: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict, server_default="{}")
    # What the document is about, extracted at ingestion (``ingest.metadata``) without an
    # LLM: the organisation(s), the period it covers ("2023-Q1", "2023", "2023-03-15") and
    # the day that period ended, and its type ("Form 10-Q", "memo", "email"...).
    organisations: Mapped[list[str]] = mapped_column(
        PortableJSON, default=list, server_default="[]"
    )
    period: Mapped[str | None] = mapped_column(String(32))
    period_end: Mapped[date | None] = mapped_column(Date)
    document_type: Mapped[str | None] = mapped_column(String(64))
    # What the tenant says about the document (upload ``metadata``, ``PATCH``): free keys;
    # "title", "organisation", "period" and "document_type" override the extracted ones.
    user_metadata: Mapped[dict[str, Any]] = mapped_column(
        PortableJSON, default=dict, server_default="{}"
    )

    chunks: Mapped[list[Chunk]] = relationship(
        back_populates="document", cascade="all, delete-orphan", passive_deletes=True
    )


class Chunk(Base):
    __tablename__ = "chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "version", "ordinal"),
        Index("ix_chunks_tenant_document", "tenant_id", "document_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    ordinal: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    page_start: Mapped[int | None] = mapped_column(Integer)
    page_end: Mapped[int | None] = mapped_column(Integer)
    heading_path: Mapped[list[str]] = mapped_column(PortableJSON, default=list)
    element_types: Mapped[list[str]] = mapped_column(PortableJSON, default=list)
    char_start: Mapped[int | None] = mapped_column(Integer)
    char_end: Mapped[int | None] = mapped_column(Integer)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    # ISO 639-1 code detected when the chunk is indexed ("und": undetermined).
    language: Mapped[str | None] = mapped_column(String(16))
    # Extra per-chunk facts (e.g. the HTML of a table) that later stages may use.
    extra: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )

    document: Mapped[Document] = relationship(back_populates="chunks")


class FeedbackRating(enum.StrEnum):
    UP = "up"
    DOWN = "down"


class QueryLog(Base):
    """One asked question with its answer, citations and per-stage timings: the record
    that feedback attaches to and that evaluations replay."""

    __tablename__ = "query_log"
    __table_args__ = (Index("ix_query_log_tenant_created", "tenant_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    # Which key asked (no foreign key: a revoked or deleted key must not erase history).
    api_key_id: Mapped[str | None] = mapped_column(String(36))
    conversation_id: Mapped[str | None] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text, default="")
    citations: Mapped[list[dict[str, Any]]] = mapped_column(PortableJSON, default=list)
    # The retrieved sources (ids, ranks, scores) the answer was generated from.
    sources: Mapped[list[dict[str, Any]]] = mapped_column(PortableJSON, default=list)
    refused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    uncited: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    invalid_citations: Mapped[int] = mapped_column(Integer, default=0)
    generator: Mapped[str] = mapped_column(String(64), default="")
    prompt_version: Mapped[str | None] = mapped_column(String(32))
    # Set when generation failed (e.g. the LLM server was down): the question is kept.
    error: Mapped[str | None] = mapped_column(Text)
    # Milliseconds per stage: retrieve_ms, rerank_ms, generate_ms, total_ms.
    timings: Mapped[dict[str, float]] = mapped_column(PortableJSON, default=dict)
    feedback: Mapped[FeedbackRating | None] = mapped_column(
        Enum(
            FeedbackRating,
            native_enum=False,
            length=8,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    feedback_comment: Mapped[str | None] = mapped_column(Text)
    feedback_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )


class QuestionUsage(Base):
    """Questions a tenant asked on one UTC day: the daily question quota's counter. A
    question (API, chat, each question of an eval run) is counted here, under the tenant's
    row lock, before it is answered: parallel requests cannot all pass one check."""

    __tablename__ = "question_usage"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    questions: Mapped[int] = mapped_column(Integer, default=0)


class Bm25TermStat(Base):
    """A tenant's BM25 document frequency for one term (chunks containing it).

    Per tenant on purpose: one tenant's documents must never shape another's ranking.
    ``term_id`` is the term's stable hash, the same index its weight has in the sparse vector.
    """

    __tablename__ = "bm25_term_stats"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    term_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    df: Mapped[int] = mapped_column(Integer, default=0)


class Bm25CorpusStat(Base):
    """A tenant's BM25 corpus size: indexed chunks and their total length in terms."""

    __tablename__ = "bm25_corpus_stats"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    doc_count: Mapped[int] = mapped_column(Integer, default=0)
    total_length: Mapped[int] = mapped_column(BigInteger, default=0)


class ChatIntegration(Base):
    """A chat workspace (a Slack team, later other platforms) mapped to one tenant.

    Its secrets are stored encrypted (``core.secrets.SecretBox``), never in clear.
    """

    __tablename__ = "chat_integrations"
    __table_args__ = (UniqueConstraint("platform", "external_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    platform: Mapped[str] = mapped_column(String(32))
    # The platform's id for the workspace (Slack: the team id, "T0123...").
    external_id: Mapped[str] = mapped_column(String(64))
    bot_token_encrypted: Mapped[str] = mapped_column(Text)
    signing_secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )


class EvalRunStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class EvalRun(Base):
    """One offline evaluation of a tenant's retrieval (and answers) on a question set: its
    parameters, progress, metrics per mode and where its report lies. Runs of the same
    data set are compared with each other to flag regressions (``eval.runs``)."""

    __tablename__ = "eval_runs"
    __table_args__ = (
        Index("ix_eval_runs_tenant_dataset_created", "tenant_id", "dataset", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    dataset: Mapped[str] = mapped_column(String(255))
    modes: Mapped[list[str]] = mapped_column(PortableJSON, default=list)
    # Options (answers, depth, limits...) and, for an uploaded question set, its questions.
    params: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    status: Mapped[EvalRunStatus] = mapped_column(
        Enum(
            EvalRunStatus,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=EvalRunStatus.QUEUED,
    )
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    # results.json: metrics per mode, latencies, the comparison with the previous run.
    results: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # The run directory (results.json, report.md, report.html and the plots).
    report_path: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
