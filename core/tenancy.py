"""The tenancy choke point.

A ``TenantScope`` is the only way to reach tenant data: the API's auth dependency
builds one from an API key, the CLI builds one from ``--tenant SLUG``. SQL reads on
tenant-owned tables go through :func:`scoped`, the index module requires a scope for
every call, and files live under :func:`tenant_dir`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Tenant

SelectT = TypeVar("SelectT", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True, slots=True)
class TenantScope:
    """Who is asking: one tenant (and the key that proved it, when there was one)."""

    tenant_id: str
    slug: str
    api_key_id: str | None = None

    def __post_init__(self) -> None:
        if not self.tenant_id:
            raise ValueError("TenantScope needs a tenant id")


def scoped(stmt: SelectT, model: Any, scope: TenantScope) -> SelectT:
    """Restrict a SELECT on a tenant-owned model to the scope's tenant."""
    return stmt.where(model.tenant_id == scope.tenant_id)


def get_owned(session: Session, model: type[Any], object_id: str, scope: TenantScope) -> Any:
    """Load one tenant-owned row by id or raise 404 — also when it belongs to another tenant,
    so that a guessed id never confirms that it exists."""
    row = session.get(model, object_id)
    if row is None or row.tenant_id != scope.tenant_id:
        raise NotFound(f"{model.__name__.lower()} {object_id!r} not found")
    return row


def scope_for_slug(session: Session, slug: str) -> TenantScope:
    """Scope for local tools (CLI) that act on a tenant without an API key."""
    tenant = session.query(Tenant).filter(Tenant.slug == slug).one_or_none()
    if tenant is None:
        raise NotFound(f"tenant {slug!r} not found")
    return TenantScope(tenant_id=tenant.id, slug=tenant.slug)


def tenant_dir(files_root: Path, scope: TenantScope) -> Path:
    """The tenant's own folder for stored files (named by id: slugs can be renamed)."""
    return files_root / scope.tenant_id
