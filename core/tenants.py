"""Tenants and their API keys: the operations the admin API and the CLI share.

``authenticate`` is the single place where a presented key becomes an identity: it is
called by the API's auth dependency on every request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.api_keys import generate_key, hash_key, key_matches, parse_prefix
from core.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized
from core.models import ApiKey, KeyRole, Tenant, utcnow
from core.tenancy import TenantScope, scoped

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key row plus its plaintext, which exists only in this object, once."""

    key: ApiKey
    plaintext: str


@dataclass(frozen=True, slots=True)
class Identity:
    """The result of authenticating a key: an admin, or a tenant scope."""

    role: KeyRole
    scope: TenantScope | None
    api_key_id: str | None
    # The tenant's overrides of the default limits (core.limits), empty for admins.
    limit_overrides: dict[str, Any] = field(default_factory=dict)


def create_tenant(session: Session, slug: str, name: str | None = None) -> Tenant:
    if not SLUG_PATTERN.match(slug):
        raise BadRequest(
            f"invalid tenant slug {slug!r}: use 1-63 lowercase letters, digits and inner hyphens",
            code="invalid_slug",
        )
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise Conflict(f"tenant {slug!r} already exists", code="tenant_exists")
    tenant = Tenant(slug=slug, name=name or slug)
    session.add(tenant)
    session.flush()
    return tenant


def set_limit_overrides(session: Session, slug_or_id: str, changes: dict[str, Any]) -> Tenant:
    """Merge limit overrides into the tenant's; a value of None removes that override."""
    tenant = get_tenant(session, slug_or_id)
    merged = dict(tenant.limits or {})
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    tenant.limits = merged  # a new dict, so the JSON column is seen as changed
    session.flush()
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.slug)))


def get_tenant(session: Session, slug_or_id: str) -> Tenant:
    tenant = session.scalar(
        select(Tenant).where((Tenant.slug == slug_or_id) | (Tenant.id == slug_or_id))
    )
    if tenant is None:
        raise NotFound(f"tenant {slug_or_id!r} not found", code="tenant_not_found")
    return tenant


def update_tenant(
    session: Session, slug_or_id: str, *, name: str | None = None, disabled: bool | None = None
) -> Tenant:
    """Rename and/or disable/enable a tenant; a disabled tenant's keys all get 403."""
    tenant = get_tenant(session, slug_or_id)
    if name is not None:
        tenant.name = name
    if disabled is not None:
        tenant.disabled = disabled
    session.flush()
    return tenant


def issue_key(
    session: Session, *, role: KeyRole, tenant: Tenant | None = None, name: str = ""
) -> IssuedKey:
    if (role is KeyRole.TENANT) != (tenant is not None):
        raise ValueError("tenant keys need a tenant; admin keys must not have one")
    new = generate_key()
    key = ApiKey(
        tenant_id=tenant.id if tenant else None,
        role=role,
        name=name,
        prefix=new.prefix,
        key_hash=new.key_hash,
    )
    session.add(key)
    session.flush()
    return IssuedKey(key=key, plaintext=new.plaintext)


def list_keys(session: Session, tenant: Tenant) -> list[ApiKey]:
    return list(
        session.scalars(
            scoped(select(ApiKey), ApiKey, TenantScope.of(tenant)).order_by(ApiKey.created_at)
        )
    )


def revoke_key(session: Session, key_id_or_prefix: str) -> ApiKey:
    key = session.scalar(
        select(ApiKey).where((ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))
    )
    if key is None:
        raise NotFound(f"API key {key_id_or_prefix!r} not found", code="key_not_found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def has_admin_key(session: Session) -> bool:
    stmt = select(ApiKey.id).where(ApiKey.role == KeyRole.ADMIN, ApiKey.revoked_at.is_(None))
    return session.scalar(stmt.limit(1)) is not None


# Recording every use would be a write per request; once a minute is enough to see activity.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _touch(key: ApiKey) -> None:
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        key.last_used_at = now


def authenticate(session: Session, presented: str, settings_admin_key: str | None) -> Identity:
    """Turn a presented key into an identity, or raise 401/403.

    401: no such key (malformed, unknown, wrong secret). 403: a real key that may no
    longer be used (revoked, or its tenant disabled).
    """
    if settings_admin_key and key_matches(presented, hash_key(settings_admin_key)):
        return Identity(role=KeyRole.ADMIN, scope=None, api_key_id=None)
    prefix = parse_prefix(presented)
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix)) if prefix else None
    if key is None or not key_matches(presented, key.key_hash):
        raise Unauthorized("invalid API key", code="invalid_api_key")
    if key.revoked_at is not None:
        raise Forbidden("this API key has been revoked", code="api_key_revoked")
    _touch(key)
    if key.role is KeyRole.ADMIN:
        return Identity(role=KeyRole.ADMIN, scope=None, api_key_id=key.id)
    tenant = key.tenant
    if tenant is None:
        raise Unauthorized("invalid API key", code="invalid_api_key")
    if tenant.disabled:
        raise Forbidden("this tenant is disabled", code="tenant_disabled")
    return Identity(
        role=KeyRole.TENANT,
        scope=TenantScope(tenant_id=tenant.id, slug=tenant.slug, api_key_id=key.id),
        api_key_id=key.id,
        limit_overrides=dict(tenant.limits or {}),
    )
