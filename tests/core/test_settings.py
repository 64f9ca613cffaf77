"""Settings: embedded defaults under one data dir; production values switch by env only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from core.settings import ENV_NAMES, Settings


def test_embedded_defaults_live_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAGKB_DATA_DIR", str(tmp_path / "kb"))
    settings = Settings(_env_file=None)
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path / 'kb' / 'ragkb.db'}"
    assert settings.index_path == tmp_path / "kb" / "index"
    assert settings.files_dir == tmp_path / "kb" / "files"
    assert settings.tasks.mode == "inprocess"
    assert settings.storage.redis_url is None and settings.index.qdrant_url is None
    assert settings.should_auto_migrate is True


def test_production_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGKB_DATABASE_URL", "postgresql+psycopg://u:p@db/ragkb")
    monkeypatch.setenv("RAGKB_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("RAGKB_QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("RAGKB_LLM_BASE_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("RAGKB_TASK_MODE", "celery")
    monkeypatch.setenv("RAGKB_ADMIN_KEY", "s3cret")
    settings = Settings(_env_file=None)
    assert settings.sqlalchemy_url.startswith("postgresql+psycopg://")
    assert settings.should_auto_migrate is False
    assert settings.tasks.mode == "celery"
    assert settings.llm.base_url == "http://vllm:8000/v1"
    assert "s3cret" not in repr(settings)


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RAGKB_PORT=9123\n")
    monkeypatch.delenv("RAGKB_PORT", raising=False)
    assert Settings(_env_file=env_file).server.port == 9123


def test_invalid_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGKB_TASK_MODE", "threads")
    with pytest.raises(ValueError, match=r"tasks\.mode"):
        Settings(_env_file=None)


# Every flat field of before the sections, by its environment name: each must still be read.
_FLAT_NAMES = """
data_dir database_url redis_url qdrant_url qdrant_path qdrant_api_key task_mode broker_url
celery_queue celery_light_queue ingest_workers chunk_max_tokens chunk_overlap_tokens
chunk_min_tokens ingest_pdf_strategy ingest_ocr_max_pages ingest_max_pages
ingest_max_uncompressed_bytes ingest_max_text_chars ingest_time_limit_s eval_time_limit_s
ingest_heartbeat_s ingest_stale_after_s ingest_max_attempts ingest_retries max_files_per_upload
upload_orphan_after_s admin_key secret_key slack_api_base_url public_base_url host port
auto_migrate max_upload_bytes warm_up rate_limit_key_rps rate_limit_key_burst
rate_limit_tenant_rps rate_limit_tenant_burst rate_limit_refusal_memory_s
max_concurrent_queries_per_tenant quota_max_documents quota_max_stored_bytes
quota_max_queries_per_day metrics_tenant_label worker_metrics_port log_level log_json
embedding_model rerank_model index_engine embedding_batch_size bm25_k1 bm25_b rrf_k
retrieval_candidates rerank_candidates rerank_min_score rerank_max_per_document answer_top_k
llm_base_url llm_model llm_api_key llm_temperature llm_max_tokens llm_context_tokens
llm_tokenizer llm_connect_timeout_s llm_read_timeout_s llm_deadline_s llm_retries
llm_retry_backoff_s llm_breaker_failures llm_breaker_cooldown_s refusal_min_rerank_score
refusal_min_dense_score extractive_max_sentences embedding_languages embedding_query_prefix
embedding_passage_prefix
"""
FLAT_NAMES_BEFORE_SECTIONS = _FLAT_NAMES.split()
# Settings added since, each with its own name.
NAMES_ADDED_SINCE = [
    "ingest_tenant_max_in_flight",
    "metrics_token",
    "metrics_bind",
    "ingest_pdf_parser",
    "ingest_pdf_page_timeout_s",
    "chunk_table_max_tokens",
    "question_match",
    "fusion_dense_weight",
    "match_boost",
    "extractive_min_overlap",
]


def _section_fields() -> set[tuple[str, str]]:
    fields = set()
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel), section
        fields |= {(section, name) for name in model.model_fields}
    return fields


def test_every_field_has_exactly_one_environment_name_and_none_was_lost() -> None:
    assert sorted(ENV_NAMES) == sorted(FLAT_NAMES_BEFORE_SECTIONS + NAMES_ADDED_SINCE)
    targets = list(ENV_NAMES.values())
    assert len(set(targets)) == len(targets), "two names for one field"
    assert set(targets) == _section_fields(), "a field without a name, or a name without one"


@pytest.mark.parametrize(
    ("variable", "value", "section", "field", "expected"),
    [
        ("RAGKB_LLM_BASE_URL", "http://vllm:8000/v1", "llm", "base_url", "http://vllm:8000/v1"),
        ("RAGKB_LLM_MAX_TOKENS", "300", "llm", "max_tokens", 300),
        ("RAGKB_BM25_K1", "1.2", "retrieval", "bm25_k1", 1.2),
        ("RAGKB_RETRIEVAL_CANDIDATES", "50", "retrieval", "candidates", 50),
        ("RAGKB_RATE_LIMIT_KEY_RPS", "7.5", "limits", "rate_limit_key_rps", 7.5),
        ("RAGKB_QUOTA_MAX_DOCUMENTS", "10", "limits", "quota_max_documents", 10),
        ("RAGKB_TASK_MODE", "celery", "tasks", "mode", "celery"),
        ("RAGKB_INDEX_ENGINE", "local", "index", "engine", "local"),
        ("RAGKB_INGEST_MAX_PAGES", "7", "ingest", "max_pages", 7),
        ("RAGKB_CHUNK_MAX_TOKENS", "128", "ingest", "chunk_max_tokens", 128),
        ("RAGKB_EVAL_TIME_LIMIT_S", "60", "eval", "time_limit_s", 60),
        ("RAGKB_ANSWER_TOP_K", "5", "answer", "top_k", 5),
        (
            "RAGKB_SLACK_API_BASE_URL",
            "http://slack/",
            "chat",
            "slack_api_base_url",
            "http://slack/",
        ),
        ("RAGKB_WARM_UP", "false", "server", "warm_up", False),
        ("RAGKB_LOG_JSON", "0", "observability", "log_json", False),
        ("RAGKB_RERANK_MODEL", "/models/ce", "models", "rerank_model", "/models/ce"),
        ("ragkb_port", "9001", "server", "port", 9001),  # any case, as before
    ],
)
def test_each_environment_variable_lands_in_its_section(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    section: str,
    field: str,
    expected: object,
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(getattr(Settings(_env_file=None), section), field) == expected


def test_secrets_stay_secret_in_their_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGKB_LLM_API_KEY", "sk-hidden")
    monkeypatch.setenv("RAGKB_QDRANT_API_KEY", "qd-hidden")
    settings = Settings(_env_file=None)
    assert isinstance(settings.llm.api_key, SecretStr)
    assert settings.llm.api_key.get_secret_value() == "sk-hidden"
    assert settings.index.qdrant_api_key is not None
    assert "hidden" not in repr(settings) and "hidden" not in str(settings.model_dump())


def test_dotenv_is_read_under_the_flat_names_below_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RAGKB_BM25_B=0.7\nRAGKB_LLM_MODEL=from-file\nRAGKB_UNKNOWN=ignored\n")
    monkeypatch.setenv("RAGKB_LLM_MODEL", "from-env")
    settings = Settings(_env_file=env_file)
    assert settings.retrieval.bm25_b == 0.7
    assert settings.llm.model == "from-env"


def test_arguments_override_the_environment_field_by_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RAGKB_LLM_BASE_URL", "http://env/v1")
    monkeypatch.setenv("RAGKB_LLM_MODEL", "env-model")
    settings = Settings(_env_file=None, llm={"model": "arg-model"})
    assert (settings.llm.base_url, settings.llm.model) == ("http://env/v1", "arg-model")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RAGKB_BM25_B", "1.5"),  # le=1
        ("RAGKB_LLM_TEMPERATURE", "-1"),  # ge=0
        ("RAGKB_RATE_LIMIT_KEY_RPS", "0"),  # gt=0
        ("RAGKB_INGEST_PDF_STRATEGY", "hi_res"),  # Literal
    ],
)
def test_bounds_and_choices_still_hold(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_with_changes_validates_and_keeps_the_rest(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, storage={"data_dir": tmp_path}, llm={"model": "m"})
    changed = settings.with_changes(llm={"base_url": "http://llm/v1"}, retrieval={"rrf_k": 60})
    assert (changed.llm.base_url, changed.llm.model) == ("http://llm/v1", "m")
    assert changed.retrieval.rrf_k == 60 and changed.storage.data_dir == tmp_path
    assert settings.llm.base_url is None  # a copy
    with pytest.raises(ValidationError):
        settings.with_changes(retrieval={"bm25_b": 2.0})


@pytest.mark.parametrize(
    "build",
    [
        # The old flat name: mypy refuses it too (call-arg), here it must fail at run time.
        lambda: Settings(_env_file=None, llm_base_url="http://x"),  # type: ignore[call-arg]
        lambda: Settings(_env_file=None, llm={"llm_base_url": "http://x"}),
        lambda: Settings(_env_file=None).with_changes(llm={"llm_base_url": "http://x"}),
        lambda: Settings(_env_file=None).with_changes(retrieval={"bm25_k2": 1.0}),
    ],
)
def test_an_old_or_unknown_name_in_code_fails(build: Any) -> None:
    with pytest.raises(ValidationError):
        build()


def test_an_unknown_section_fails() -> None:
    with pytest.raises(TypeError, match="no section"):
        Settings(_env_file=None).with_changes(generation={"model": "m"})


def test_mypy_refuses_a_flat_name(tmp_path: Path) -> None:
    """The type checker is what catches a flat name left in code (``llm_base_url``)."""
    mypy_api = pytest.importorskip("mypy.api")
    code = tmp_path / "uses_settings.py"
    code.write_text(
        "from core.settings import Settings\n\n\n"
        "def url(config: Settings) -> str | None:\n"
        "    return config.llm_base_url\n\n\n"
        "def ok(config: Settings) -> str | None:\n"
        "    return config.llm.base_url\n"
    )
    out, _, status = mypy_api.run(
        [str(code), "--follow-imports=silent", "--cache-dir", str(tmp_path / "cache")]
    )
    assert status == 1, out
    assert '"Settings" has no attribute "llm_base_url"' in out
    assert out.count("error:") == 1, out
