"""ORM behaviour the rest relies on, on both engines: UTC-aware datetimes, cascades
(SQLite needs PRAGMA foreign_keys=ON), and 404 for another tenant's ids."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.db import Database
from core.errors import NotFound
from core.models import ApiKey, Chunk, Document, KeyRole
from core.settings import Settings
from core.tenancy import get_owned
from core.tenants import create_tenant, issue_key


@pytest.fixture
def database(any_db_settings: Settings) -> Iterator[Database]:
    db = Database.from_settings(any_db_settings)
    yield db
    db.dispose()


def test_datetimes_are_utc_aware_on_read(database: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    with database.session() as session:
        tenant = create_tenant(session, "acme")
        key = issue_key(session, role=KeyRole.TENANT, tenant=tenant).key
        key.revoked_at = datetime(2026, 1, 1, 12, 0, tzinfo=plus_two)
        key_id = key.id
    with database.session() as session:
        row = session.get(ApiKey, key_id)
        assert row is not None and row.revoked_at is not None
        assert row.revoked_at.tzinfo is not None
        assert row.revoked_at == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
        assert row.created_at.tzinfo is not None


def test_deleting_a_tenant_cascades_to_its_data(database: Database) -> None:
    with database.session() as session:
        tenant = create_tenant(session, "acme")
        issue_key(session, role=KeyRole.TENANT, tenant=tenant)
        doc = Document(tenant_id=tenant.id, filename="a.txt", sha256="0" * 64)
        session.add(doc)
        session.flush()
        session.add(Chunk(tenant_id=tenant.id, document_id=doc.id, ordinal=0, text="hello"))
    with database.session() as session:
        session.delete(session.get(type(tenant), tenant.id))
    with database.session() as session:
        assert session.query(ApiKey).count() == 0
        assert session.query(Document).count() == 0
        assert session.query(Chunk).count() == 0


def test_get_owned_hides_other_tenants_rows(database: Database) -> None:
    from core.tenancy import TenantScope

    with database.session() as session:
        a = create_tenant(session, "tenant-a")
        b = create_tenant(session, "tenant-b")
        doc = Document(tenant_id=a.id, filename="secret.pdf", sha256="1" * 64)
        session.add(doc)
        session.flush()
        scope_a = TenantScope(a.id, a.slug)
        scope_b = TenantScope(b.id, b.slug)
        assert get_owned(session, Document, doc.id, scope_a).filename == "secret.pdf"
        with pytest.raises(NotFound):
            get_owned(session, Document, doc.id, scope_b)
        with pytest.raises(NotFound):
            get_owned(session, Document, "no-such-id", scope_a)
