"""Helpers shared by test modules (pytest fixtures live in tests/conftest.py): settings,
the error-shape assertion, tenant credentials, and where the repository and data are."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from core.settings import Settings
from core.tenancy import TenantScope

ADMIN_KEY = "test-admin-" + uuid.uuid4().hex
REPO_ROOT = Path(__file__).resolve().parents[2]  # tests/support/helpers.py -> the repository
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"  # small data files the tests read


def make_settings(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    """Settings for a test: everything under ``data_dir``, nothing read from the env."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "admin_key": SecretStr(ADMIN_KEY),
        "auto_migrate": False,
        "log_json": False,
        # Tests open indexes on demand; a warm-up thread per app would only compete.
        "warm_up": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


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
