"""Request and response bodies of the HTTP API, and the functions that build a response
body from a result. The routers and the CLI (``ragkb ask --json`` prints the API's answer
body) take them from here; no router defines a schema of its own."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from core.document_facts import DocumentFacts, facts_of
from core.limits import TenantLimits
from core.models import Document, DocumentStatus, EvalRun, EvalRunStatus, FeedbackRating, Tenant
from core.settings import Settings
from generation.answer import AnswerResult
from generation.query_log import numbered_sources
from generation.sources import Source
from retrieval.document_match import FILTER_FIELDS, MetadataFilters

# --- tenants, keys, chat workspaces, limits -----------------------------------------------


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    slug: str
    name: str
    disabled: bool
    created_at: datetime


class TenantCreate(BaseModel):
    slug: str = Field(min_length=1, max_length=63, examples=["acme"])
    name: str | None = Field(default=None, max_length=255)


class TenantUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=255)
    disabled: bool | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant_id: str | None
    role: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreate(BaseModel):
    name: str = Field(default="", max_length=255)


class IssuedKeyOut(ApiKeyOut):
    key: str = Field(description="The API key. Shown once; only its hash is stored.")


class MeOut(BaseModel):
    tenant: TenantOut
    api_key_id: str | None


class SlackWorkspaceIn(BaseModel):
    team_id: str = Field(pattern=r"^[A-Z0-9]{2,32}$", examples=["T0123ABCD"])
    bot_token: SecretStr = Field(description="The workspace's bot token (xoxb-...).")
    signing_secret: SecretStr = Field(description="The Slack app's signing secret.")


class ChatWorkspaceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant_id: str
    platform: str
    external_id: str = Field(description="The workspace id on its platform (Slack team id).")
    created_at: datetime


class TenantLimitsIn(BaseModel):
    """Overrides of the default limits for one tenant. Omitted fields stay as they are;
    null removes the override (back to the default)."""

    model_config = ConfigDict(extra="forbid")

    rate_limit_key_rps: float | None = Field(default=None, gt=0)
    rate_limit_key_burst: int | None = Field(default=None, ge=1)
    rate_limit_tenant_rps: float | None = Field(default=None, gt=0)
    rate_limit_tenant_burst: int | None = Field(default=None, ge=1)
    max_concurrent_queries: int | None = Field(default=None, ge=1)
    max_documents: int | None = Field(default=None, ge=0)
    max_stored_bytes: int | None = Field(default=None, ge=0)
    max_queries_per_day: int | None = Field(default=None, ge=0)


class TenantLimitsOut(BaseModel):
    overrides: dict[str, float | int]
    effective: dict[str, float | int | None]


def limits_out(tenant: Tenant, settings: Settings) -> TenantLimitsOut:
    """A tenant's limit overrides and the limits in force (the body of .../limits)."""
    effective = TenantLimits.defaults(settings).with_overrides(tenant.limits)
    return TenantLimitsOut(overrides=dict(tenant.limits or {}), effective=asdict(effective))


# --- documents ----------------------------------------------------------------------------


class DocumentFactsOut(BaseModel):
    """What a document is about: its title, organisation(s), the period it covers
    ("2023-Q1", "2023", "2023-03-15") and the day that period ended, and its type."""

    title: str | None = None
    organisations: list[str] = Field(default_factory=list)
    period: str | None = None
    period_end: date | None = None
    document_type: str | None = None

    @classmethod
    def of(cls, facts: DocumentFacts) -> DocumentFactsOut:
        return cls(
            title=facts.title,
            organisations=list(facts.organisations),
            period=facts.period,
            period_end=facts.period_end,
            document_type=facts.document_type,
        )


class DocumentOut(BaseModel):
    """A document. Its title, organisations, period, period_end and document_type are the
    ones search and filters use: your ``metadata`` where it gives them (keys ``title``,
    ``organisation``, ``period``, ``document_type``), else what ingestion extracted
    (``extracted``)."""

    id: str
    filename: str
    title: str | None = None
    organisations: list[str] = Field(default_factory=list)
    period: str | None = Field(default=None, examples=["2023-Q1"])
    period_end: date | None = None
    document_type: str | None = None
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description="Your own metadata (upload `metadata`, PATCH /v1/documents/{id}).",
    )
    extracted: DocumentFactsOut = Field(
        default_factory=DocumentFactsOut,
        description="What ingestion extracted from the file (before your metadata).",
    )
    media_type: str
    sha256: str
    size_bytes: int
    version: int
    tags: list[str]
    status: DocumentStatus = Field(
        description="The stage: queued, parsing, chunking, "
        "embedding, indexing, ready, failed or deleting."
    )
    stage: str = Field(default="", description="What is happening now, in words.")
    progress: float = Field(description="Percent done, 0 to 100.")
    error: str | None
    page_count: int | None
    chunk_count: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, document: Document) -> DocumentOut:
        effective = DocumentFactsOut.of(facts_of(document))
        return cls(
            **effective.model_dump(),
            id=document.id,
            filename=document.filename,
            metadata=dict(document.user_metadata or {}),
            extracted=DocumentFactsOut(
                title=document.title,
                organisations=list(document.organisations or []),
                period=document.period,
                period_end=document.period_end,
                document_type=document.document_type,
            ),
            media_type=document.media_type,
            sha256=document.sha256,
            size_bytes=document.size_bytes,
            version=document.version,
            tags=list(document.tags or []),
            status=document.status,
            stage=_STAGES[document.status],
            progress=round(100.0 * (document.progress or 0.0), 1),
            error=document.error,
            page_count=document.page_count,
            chunk_count=document.chunk_count,
            created_at=document.created_at,
            updated_at=document.updated_at,
        )


class DocumentMetadataIn(BaseModel):
    """New metadata for a document, merged into what it has (JSON merge patch): each key
    given is set, a key set to null is removed, keys not given stay. With ``replace``,
    ``metadata`` becomes the whole of it. Values: text, numbers, booleans or lists of them;
    at most 50 keys and 8 KB. The keys title, organisation, period and document_type
    override the extracted ones; changing them re-indexes the document's chunks."""

    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Any] = Field(
        examples=[{"department": "legal", "organisation": "Apple Inc.", "draft": None}]
    )
    replace: bool = Field(default=False, description="Replace the metadata instead of merging.")


_STAGES = {
    DocumentStatus.QUEUED: "waiting for a worker",
    DocumentStatus.PARSING: "extracting text",
    DocumentStatus.CHUNKING: "splitting into chunks",
    DocumentStatus.EMBEDDING: "computing embeddings",
    DocumentStatus.INDEXING: "writing to the index",
    DocumentStatus.READY: "searchable",
    DocumentStatus.FAILED: "failed",
    DocumentStatus.DELETING: "being deleted",
}


class UploadedDocument(BaseModel):
    id: str
    filename: str
    status: DocumentStatus
    version: int
    duplicate: bool = Field(description="True: the tenant already had these exact bytes.")


class RejectedFile(BaseModel):
    filename: str
    status_code: int
    code: str
    message: str


class UploadOut(BaseModel):
    documents: list[UploadedDocument]
    rejected: list[RejectedFile] = Field(
        default_factory=list, description="Files of the batch that were refused, and why."
    )


class DocumentPage(BaseModel):
    items: list[DocumentOut]
    total: int
    limit: int
    offset: int


class ChunkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    version: int
    ordinal: int
    text: str
    page_start: int | None
    page_end: int | None
    heading_path: list[str]
    element_types: list[str]
    char_start: int | None
    char_end: int | None
    token_count: int
    extra: dict[str, Any]


# --- questions and answers ----------------------------------------------------------------


class QueryIn(BaseModel):
    question: str = Field(min_length=1, max_length=4000, examples=["What was Q3 revenue?"])
    top_k: int | None = Field(
        default=None,
        ge=1,
        le=50,
        description="Sources retrieved for the answer (default: the answer_top_k setting).",
    )
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    rerank: bool = True
    document_ids: list[str] | None = Field(default=None, description="Only these documents.")
    tags: list[str] | None = Field(default=None, description="Only documents with these tags.")
    filters: MetadataFilters | None = Field(
        default=None,
        description="Only documents whose metadata matches, e.g. "
        '{"organisation": "Apple", "period": "2023-Q1"}. Allowed fields: '
        + ", ".join(FILTER_FIELDS)
        + ".",
    )
    stream: bool = Field(default=False, description="Answer as Server-Sent Events.")
    conversation_id: str | None = Field(default=None, max_length=64)


class ChunkRef(BaseModel):
    """Where a passage comes from: chunk, document, file, pages, heading."""

    chunk_id: str
    document_id: str
    filename: str
    page_start: int | None
    page_end: int | None
    heading: str | None
    printed_pages: str | None = Field(
        default=None,
        description='The page numbers printed on those pages ("43" or "43-44"), where they '
        "differ from the physical pages.",
    )


class CitationOut(ChunkRef):
    n: int
    quote: str = Field(description="The sentence(s) of the chunk that support the claim.")


class SourceOut(ChunkRef):
    n: int | None = Field(description="Its [n] in the answer; null when not in the prompt.")
    score: float
    scores: dict[str, float]
    snippet: str


class QueryOut(BaseModel):
    query_id: str
    answer: str
    citations: list[CitationOut]
    refused: bool = Field(description="The knowledge base has no answer to this question.")
    uncited: bool = Field(description="The answer kept no valid citation (not grounded).")
    invalid_citations: int = Field(description="[n] markers removed: they matched no source.")
    sources: list[SourceOut]
    generator: str
    prompt_version: str | None
    timings: dict[str, float] = Field(
        description="Milliseconds: retrieve_ms, rerank_ms, generate_ms, total_ms."
    )


class FeedbackIn(BaseModel):
    query_id: str
    rating: FeedbackRating
    comment: str | None = Field(default=None, max_length=4000)


class FeedbackOut(BaseModel):
    query_id: str
    rating: FeedbackRating
    comment: str | None


def query_out(
    query_id: str, result: AnswerResult, sources: list[Source], timings: dict[str, float]
) -> QueryOut:
    """The API's answer body (also what `ragkb ask --json` prints)."""
    return QueryOut(
        query_id=query_id,
        answer=result.answer,
        citations=[CitationOut.model_validate(c.to_dict()) for c in result.citations],
        refused=result.refused,
        uncited=result.uncited,
        invalid_citations=result.invalid_citations,
        sources=[SourceOut.model_validate(s) for s in numbered_sources(sources, result)],
        generator=result.generator,
        prompt_version=result.prompt_version,
        timings=timings,
    )


# --- evaluation runs ----------------------------------------------------------------------


class EvalRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    dataset: str
    modes: list[str]
    status: EvalRunStatus = Field(description="queued, running, done or failed.")
    progress: float = Field(description="Percent done, 0 to 100.")
    error: str | None
    questions: int = 0
    answers: bool = False
    results: dict[str, Any] = Field(
        default_factory=dict,
        description="Per mode (under `modes`): ndcg@10, recall@k, mrr@10, map@100 and "
        "latency percentiles; `answers`: citation precision/recall, token F1, exact match, "
        "refusal rate, groundedness; `comparison`: deltas against the previous run.",
    )
    report_url: str | None = Field(default=None, description="The HTML report, once done.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, run: EvalRun) -> EvalRunOut:
        params = run.params or {}
        return cls(
            id=run.id,
            dataset=run.dataset,
            modes=list(run.modes),
            status=run.status,
            progress=run.progress,
            error=run.error,
            questions=len(params.get("questions") or []),
            answers=bool(params.get("answers")),
            results=run.results or {},
            report_url=f"/v1/eval/runs/{run.id}/report"
            if run.status is EvalRunStatus.DONE
            else None,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


class EvalRunList(BaseModel):
    items: list[EvalRunOut]
