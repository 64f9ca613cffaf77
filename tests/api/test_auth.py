"""Tenants and API keys through HTTP, on SQLite and PostgreSQL: the admin key manages
tenants and keys; tenant keys reach tenant routes only while valid."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from tests.support.helpers import assert_error, make_app


@pytest.fixture
def http(any_db_settings: Settings) -> Iterator[TestClient]:
    with TestClient(make_app(any_db_settings), raise_server_exceptions=False) as client:
        yield client


def create_tenant_with_key(http: TestClient, admin: dict[str, str], slug: str) -> dict[str, str]:
    r = http.post("/v1/admin/tenants", json={"slug": slug, "name": slug.title()}, headers=admin)
    assert r.status_code == 201, r.text
    r = http.post(f"/v1/admin/tenants/{slug}/keys", json={"name": "ci"}, headers=admin)
    assert r.status_code == 201, r.text
    issued = r.json()
    assert issued["key"].startswith(f"rk_{issued['prefix']}_")
    return issued


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_tenant_key_reaches_tenant_route(http: TestClient, admin_headers: dict[str, str]) -> None:
    issued = create_tenant_with_key(http, admin_headers, "acme")
    r = http.get("/v1/me", headers=bearer(issued["key"]))
    assert r.status_code == 200, r.text
    assert r.json()["tenant"]["slug"] == "acme"
    assert r.json()["api_key_id"] == issued["id"]
    listed = http.get("/v1/admin/tenants/acme/keys", headers=admin_headers).json()
    assert listed[0]["last_used_at"] is not None


def test_key_is_shown_once_and_stored_hashed(
    http: TestClient, admin_headers: dict[str, str], any_db_settings: Settings
) -> None:
    from core.db import Database
    from core.models import ApiKey

    issued = create_tenant_with_key(http, admin_headers, "acme")
    listed = http.get("/v1/admin/tenants/acme/keys", headers=admin_headers).json()
    assert [k["prefix"] for k in listed] == [issued["prefix"]]
    assert all("key" not in k for k in listed)
    db = Database.from_settings(any_db_settings)
    with db.session() as session:
        row = session.get(ApiKey, issued["id"])
        assert row is not None
        assert issued["key"] not in (row.key_hash, row.prefix)
        assert len(row.key_hash) == 64
    db.dispose()


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer "}, "missing_api_key"),
        ({"Authorization": "Bearer not-a-key"}, "invalid_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
    ],
)
def test_missing_or_malformed_key_is_401(
    http: TestClient, headers: dict[str, str], code: str
) -> None:
    assert_error(http.get("/v1/me", headers=headers), 401, code)


def test_wrong_secret_with_real_prefix_is_401(
    http: TestClient, admin_headers: dict[str, str]
) -> None:
    issued = create_tenant_with_key(http, admin_headers, "acme")
    forged = issued["key"][:-4] + ("AAAA" if not issued["key"].endswith("AAAA") else "BBBB")
    assert_error(http.get("/v1/me", headers=bearer(forged)), 401, "invalid_api_key")


def test_revoked_key_is_403(http: TestClient, admin_headers: dict[str, str]) -> None:
    issued = create_tenant_with_key(http, admin_headers, "acme")
    r = http.delete(f"/v1/admin/keys/{issued['prefix']}", headers=admin_headers)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert_error(http.get("/v1/me", headers=bearer(issued["key"])), 403, "api_key_revoked")


def test_disabled_tenant_is_403_and_enabling_restores(
    http: TestClient, admin_headers: dict[str, str]
) -> None:
    issued = create_tenant_with_key(http, admin_headers, "acme")
    r = http.patch("/v1/admin/tenants/acme", json={"disabled": True}, headers=admin_headers)
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert_error(http.get("/v1/me", headers=bearer(issued["key"])), 403, "tenant_disabled")
    http.patch("/v1/admin/tenants/acme", json={"disabled": False}, headers=admin_headers)
    assert http.get("/v1/me", headers=bearer(issued["key"])).status_code == 200


def test_admin_routes_refuse_tenant_keys(http: TestClient, admin_headers: dict[str, str]) -> None:
    issued = create_tenant_with_key(http, admin_headers, "acme")
    tenant = bearer(issued["key"])
    assert_error(http.get("/v1/admin/tenants", headers=tenant), 403, "admin_key_required")
    assert_error(http.post("/v1/admin/tenants", json={"slug": "evil"}, headers=tenant), 403)
    assert_error(http.delete(f"/v1/admin/keys/{issued['id']}", headers=tenant), 403)
    assert_error(http.get("/v1/admin/tenants"), 401)


def test_tenant_routes_refuse_the_admin_key(
    http: TestClient, admin_headers: dict[str, str]
) -> None:
    assert_error(http.get("/v1/me", headers=admin_headers), 403, "tenant_key_required")


def test_admin_lists_and_disables_tenants(http: TestClient, admin_headers: dict[str, str]) -> None:
    for slug in ("acme", "globex"):
        create_tenant_with_key(http, admin_headers, slug)
    slugs = [t["slug"] for t in http.get("/v1/admin/tenants", headers=admin_headers).json()]
    assert slugs == ["acme", "globex"]
    assert_error(
        http.post("/v1/admin/tenants", json={"slug": "acme"}, headers=admin_headers),
        409,
        "tenant_exists",
    )
    assert_error(
        http.post("/v1/admin/tenants", json={"slug": "Bad Slug!"}, headers=admin_headers),
        400,
        "invalid_slug",
    )
    assert_error(http.get("/v1/admin/tenants/nope", headers=admin_headers), 404, "tenant_not_found")


def test_key_created_by_cli_init_is_an_admin_key(
    http: TestClient, any_db_settings: Settings
) -> None:
    from core.db import Database
    from core.models import KeyRole
    from core.tenants import issue_key

    db = Database.from_settings(any_db_settings)
    with db.session() as session:
        issued = issue_key(session, role=KeyRole.ADMIN, name="init")
    db.dispose()
    r = http.post("/v1/admin/tenants", json={"slug": "viadb"}, headers=bearer(issued.plaintext))
    assert r.status_code == 201, r.text
