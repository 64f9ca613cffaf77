"""Settings: embedded defaults under one data dir; production values switch by env only."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings


def test_embedded_defaults_live_under_the_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAGKB_DATA_DIR", str(tmp_path / "kb"))
    settings = Settings(_env_file=None)
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path / 'kb' / 'ragkb.db'}"
    assert settings.index_path == tmp_path / "kb" / "index"
    assert settings.files_dir == tmp_path / "kb" / "files"
    assert settings.task_mode == "inprocess"
    assert settings.redis_url is None and settings.qdrant_url is None
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
    assert settings.task_mode == "celery"
    assert settings.llm_base_url == "http://vllm:8000/v1"
    assert "s3cret" not in repr(settings)


def test_dotenv_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("RAGKB_PORT=9123\n")
    monkeypatch.delenv("RAGKB_PORT", raising=False)
    assert Settings(_env_file=env_file).port == 9123


def test_invalid_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGKB_TASK_MODE", "threads")
    with pytest.raises(ValueError, match="task_mode"):
        Settings(_env_file=None)
