"""Helpers shared by test modules (pytest fixtures live in tests/conftest.py): settings,
services and apps built from them, the error-shape assertion, tenant credentials, and where
the repository and data are."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from core.db import Database
from core.settings import Settings
from core.tenancy import TenantScope
from retrieval.embedding import DenseEmbedder
from services.container import Services, build_services

if TYPE_CHECKING:
    from fastapi import FastAPI

ADMIN_KEY = "test-admin-" + uuid.uuid4().hex
REPO_ROOT = Path(__file__).resolve().parents[2]  # tests/support/helpers.py -> the repository
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"  # small data files the tests read


def make_settings(
    data_dir: Path, database_url: str | None = None, **sections: Mapping[str, Any]
) -> Settings:
    """Settings for a test: everything under ``data_dir``, nothing read from the ``.env``
    file; ``sections`` change fields as ``Settings.with_changes`` does
    (``make_settings(tmp_path, llm={"base_url": url})``)."""
    defaults = Settings(
        _env_file=None,
        storage={"data_dir": data_dir, "database_url": database_url},
        security={"admin_key": SecretStr(ADMIN_KEY)},
        # Tests open indexes on demand; a warm-up thread per app would only compete.
        server={"auto_migrate": False, "warm_up": False},
        observability={"log_json": False},
    )
    return defaults.with_changes(**sections)


_embedders: dict[tuple[Any, ...], dict[str, DenseEmbedder]] = {}


def shared_embedders(settings: Settings) -> dict[str, DenseEmbedder]:
    """The test session's embedders for the settings' model, as ``Services`` parts: the
    product loads model weights once per process, and so does the test session (once per
    test would add minutes). They hold no tenant data, only the model."""
    models = settings.models
    key = (
        models.embedding_model,
        models.embedding_batch_size,
        models.embedding_languages,
        models.embedding_query_prefix,
        models.embedding_passage_prefix,
    )
    if key not in _embedders:
        _embedders[key] = {
            "embedder": DenseEmbedder.from_settings(settings),
            "query_embedder": DenseEmbedder.from_settings(settings),
        }
    return _embedders[key]


def make_services(settings: Settings, db: Database | None = None, **parts: Any) -> Services:
    """A test's own ``Services`` (the caller closes it), sharing the session's embedders;
    ``parts`` replace any part (a generator, a reranker)."""
    return build_services(settings, db, **{**shared_embedders(settings), **parts})


def make_app(settings: Settings, **parts: Any) -> FastAPI:
    """``api.app.create_app`` over :func:`make_services` (closed with the app's lifespan)."""
    from api.app import create_app

    return create_app(services=make_services(settings, **parts))


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, str]:
    """Assert ``response`` is an error in the one shape, with the given status (and code)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert "error" in body, body
    error: dict[str, str] = body["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]
    if code is not None:
        assert error["code"] == code, error
    return error


@dataclass(frozen=True)
class TenantCredentials:
    scope: TenantScope
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}
