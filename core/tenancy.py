"""The tenancy choke point.

A ``TenantScope`` is the only way to reach tenant data: the API's auth dependency
builds one from an API key, the CLI builds one from ``--tenant SLUG``. SQL on
tenant-owned tables goes through :func:`scoped` (SELECT), :func:`scoped_update`,
:func:`scoped_delete` and :func:`scoped_count`, rows already loaded are checked with
:meth:`TenantScope.owns`, the index module requires a scope for every call, and files
live under :func:`tenant_dir`. This is the only module that compares tenant ids by hand
(``tests/core/test_tenant_scoping_rule.py`` fails on a new comparison elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import ColumnElement, Delete, Select, Update, delete, func, select, update
from sqlalchemy.orm import Session

from core.errors import NotFound
from core.models import Tenant

SelectT = TypeVar("SelectT", bound=Select[*tuple[Any, ...]])


class TenantOwned(Protocol):
    """Anything that carries the id of the tenant it belongs to (a loaded row, for one)."""

    @property
    def tenant_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class TenantScope:
    """Who is asking: one tenant (and the key that proved it, when there was one)."""

    tenant_id: str
    slug: str
    api_key_id: str | None = None

    def __post_init__(self) -> None:
        if not self.tenant_id:
            raise ValueError("TenantScope needs a tenant id")

    @classmethod
    def of(cls, tenant: Tenant) -> TenantScope:
        """Scope of a loaded tenant row, for local tools that act without an API key."""
        return cls(tenant_id=tenant.id, slug=tenant.slug)

    def owns(self, owner: TenantOwned | str) -> bool:
        """Whether a loaded row (or a tenant id read from a row or payload) is this tenant's."""
        tenant_id = owner if isinstance(owner, str) else owner.tenant_id
        return tenant_id == self.tenant_id


def _owned_by(model: Any, scope: TenantScope) -> ColumnElement[bool]:
    """The one tenant condition every scoped statement below adds."""
    condition: ColumnElement[bool] = model.tenant_id == scope.tenant_id
    return condition


def scoped(stmt: SelectT, model: Any, scope: TenantScope) -> SelectT:
    """Restrict a SELECT on a tenant-owned model to the scope's tenant."""
    return stmt.where(_owned_by(model, scope))


def scoped_update(model: type[Any], scope: TenantScope) -> Update:
    """``UPDATE model WHERE tenant_id = <scope>``: add the other conditions and the values."""
    return update(model).where(_owned_by(model, scope))


def scoped_delete(model: type[Any], scope: TenantScope) -> Delete:
    """``DELETE FROM model WHERE tenant_id = <scope>``: add any other conditions."""
    return delete(model).where(_owned_by(model, scope))


def scoped_count(
    model: type[Any], scope: TenantScope, *conditions: ColumnElement[bool]
) -> Select[int]:
    """``SELECT count(*) FROM model WHERE tenant_id = <scope> AND conditions``."""
    return select(func.count()).select_from(model).where(_owned_by(model, scope), *conditions)


def lock_tenant(session: Session, scope: TenantScope) -> None:
    """Hold the tenant's row lock until the session's transaction ends, so that one
    tenant's quota checks run one at a time (check, then insert, then commit): parallel
    requests cannot all pass a check that only one of them fits.

    A no-op UPDATE, because it locks on both databases: the row on PostgreSQL (``SELECT
    ... FOR UPDATE`` would too), the database's write lock on SQLite, which ignores ``FOR
    UPDATE``. Call it before the transaction's other statements: on SQLite a transaction
    that has written nothing yet waits for the lock with the busy timeout and then reads
    what the previous holder committed."""
    session.execute(
        update(Tenant).where(Tenant.id == scope.tenant_id).values(disabled=Tenant.disabled)
    )


def get_owned(session: Session, model: type[Any], object_id: str, scope: TenantScope) -> Any:
    """Load one tenant-owned row by id or raise 404 — also when it belongs to another tenant,
    so that a guessed id never confirms that it exists."""
    row = session.get(model, object_id)
    if row is None or not scope.owns(row):
        raise NotFound(f"{model.__name__.lower()} {object_id!r} not found")
    return row


def scope_for_slug(session: Session, slug: str) -> TenantScope:
    """Scope for local tools (CLI) that act on a tenant without an API key."""
    tenant = session.query(Tenant).filter(Tenant.slug == slug).one_or_none()
    if tenant is None:
        raise NotFound(f"tenant {slug!r} not found")
    return TenantScope.of(tenant)


def tenant_dir(files_root: Path, scope: TenantScope) -> Path:
    """The tenant's own folder for stored files (named by id: slugs can be renamed)."""
    return files_root / scope.tenant_id
