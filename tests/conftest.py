"""Shared fixtures: real SQLite files and a real PostgreSQL database, the app over HTTP,
and tenants with API keys.

- ``settings``: embedded-mode Settings in a fresh tmp data dir with a migrated SQLite file.
- ``any_db_settings``: the same, parametrized over SQLite and the local PostgreSQL.
- ``services``: the app's ``Services`` (session-shared embedders; see
  ``tests.support.helpers.make_services``), for tests that call the parts directly.
- ``client``: an HTTP client (httpx through Starlette's TestClient) against ``create_app``.
- ``make_tenant`` / ``tenant_a`` / ``tenant_b``: tenants with a fresh API key each.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from core import db as database
from core import tenants
from core.models import Base, KeyRole
from core.settings import Settings
from core.tenancy import TenantScope
from services.container import Services
from tests.support.helpers import (
    ADMIN_KEY,
    TenantCredentials,
    make_app,
    make_settings,
)
from tests.support.openai_server import Behaviour, OpenAITestServer, running_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("SCARF_NO_ANALYTICS", "1")

PG_ADMIN_DSN = os.environ.get("RAGKB_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file, copied for each test (migrating each time is slower)."""
    path = tmp_path_factory.mktemp("template") / "ragkb.db"
    database.upgrade(f"sqlite:///{path}")
    # Copies start in WAL mode, as the app would leave them (switching needs a lone lock).
    db = database.Database(f"sqlite:///{path}")
    db.ping()
    db.dispose()
    return path


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated to head, dropped after."""
    name = f"ragkb_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # the test command starts it; say so plainly
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc} (run `make services`)")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    database.upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_all(url: str) -> None:
    db = database.Database(url)
    names = ", ".join(f'"{t.name}"' for t in reversed(Base.metadata.sorted_tables))
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} CASCADE"))
    db.dispose()


@pytest.fixture
def settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(sqlite_template, data_dir / "ragkb.db")
    return make_settings(data_dir)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db_settings(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[Settings]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if request.param == "sqlite":
        shutil.copy(sqlite_template, data_dir / "ragkb.db")
        yield make_settings(data_dir)
        return
    url = request.getfixturevalue("pg_url")
    yield make_settings(data_dir, database_url=url)
    _truncate_all(url)


@pytest.fixture
def db(settings: Settings) -> Iterator[database.Database]:
    database_ = database.Database.from_settings(settings)
    yield database_
    database_.dispose()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return make_app(settings)


@pytest.fixture
def services(app: FastAPI) -> Iterator[Services]:
    """The test's process services: the app's, as in production one ``Services`` serves a
    process (two would each open the embedded index, which takes one opener)."""
    services_: Services = app.state.services
    yield services_
    services_.close()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def make_tenant(settings: Settings) -> Iterator[Callable[..., TenantCredentials]]:
    """Create a tenant with one API key directly in the test database."""
    db = database.Database.from_settings(settings)

    def _make(slug: str | None = None) -> TenantCredentials:
        with db.session() as session:
            tenant = tenants.create_tenant(session, slug or f"t-{uuid.uuid4().hex[:10]}")
            issued = tenants.issue_key(session, role=KeyRole.TENANT, tenant=tenant)
            scope = TenantScope(tenant_id=tenant.id, slug=tenant.slug, api_key_id=issued.key.id)
            return TenantCredentials(scope=scope, key=issued.plaintext, key_id=issued.key.id)

    yield _make
    db.dispose()


@pytest.fixture
def tenant_a(make_tenant: Callable[..., TenantCredentials]) -> TenantCredentials:
    return make_tenant("tenant-a")


@pytest.fixture
def tenant_b(make_tenant: Callable[..., TenantCredentials]) -> TenantCredentials:
    return make_tenant("tenant-b")


# --- the OpenAI-compatible test server (tests/support/openai_server.py) -------------------


@pytest.fixture(scope="module")
def module_server() -> Iterator[OpenAITestServer]:
    with running_server() as server:
        yield server


@pytest.fixture
def server(module_server: OpenAITestServer) -> OpenAITestServer:
    module_server.behaviour = Behaviour()
    module_server.requests.clear()
    return module_server
