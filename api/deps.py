"""FastAPI dependencies: settings, a database session, and authentication.

``require_tenant`` is the one way a route gets a ``TenantScope``; ``require_admin`` guards
the admin routes. Both go through ``core.tenants.authenticate``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from core.db import Database
from core.errors import Forbidden, RateLimited, ServiceUnavailable, Unauthorized
from core.limits import TenantLimits, reserve_questions
from core.logging import tenant_var
from core.models import KeyRole
from core.ratelimit import Bucket, Limiter, RecentRefusals, concurrency_slot, enforce_rate
from core.settings import Settings
from core.tenancy import TenantScope
from core.tenants import Identity, authenticate
from services.container import Services
from tasks.queue import TaskQueue

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer rk_...`")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_task_queue(services: ServicesDep) -> TaskQueue:
    """The process's task queue (set by the app's lifespan, which starts it)."""
    if services.task_queue is None:
        raise ServiceUnavailable("the task queue is not running", code="queue_unavailable")
    return services.task_queue


TaskQueueDep = Annotated[TaskQueue, Depends(get_task_queue)]


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_session(db: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    with db.session() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def get_identity(
    request: Request,
    settings: SettingsDep,
    db: Annotated[Database, Depends(get_database)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    if credentials is None or not credentials.credentials:
        raise Unauthorized(
            "missing API key: send `Authorization: Bearer <key>`", code="missing_api_key"
        )
    admin_key = (
        settings.security.admin_key.get_secret_value() if settings.security.admin_key else None
    )
    # Its own short session: authentication must not share the request's unit of work.
    with db.session() as session:
        identity = authenticate(session, credentials.credentials, admin_key)
    if identity.scope is not None:
        request.state.tenant = identity.scope.slug
        tenant_var.set(identity.scope.slug)
    return identity


IdentityDep = Annotated[Identity, Depends(get_identity)]


def get_limiter(request: Request) -> Limiter:
    limiter: Limiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[Limiter, Depends(get_limiter)]


def get_tenant_limits(identity: IdentityDep, settings: SettingsDep) -> TenantLimits:
    """The caller's effective limits: defaults from settings, then the tenant's overrides."""
    return TenantLimits.defaults(settings).with_overrides(identity.limit_overrides)


TenantLimitsDep = Annotated[TenantLimits, Depends(get_tenant_limits)]


def require_tenant(
    request: Request,
    identity: IdentityDep,
    limits: TenantLimitsDep,
    limiter: LimiterDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> TenantScope:
    """The tenant choke point: a valid tenant key, within its key's and tenant's rate."""
    if identity.scope is None:
        raise Forbidden("this route needs a tenant API key", code="tenant_key_required")
    scope = identity.scope
    key_bucket = Bucket(limits.rate_limit_key_rps, limits.rate_limit_key_burst)
    tenant_bucket = Bucket(limits.rate_limit_tenant_rps, limits.rate_limit_tenant_burst)
    try:
        enforce_rate(limiter, f"key:{scope.api_key_id}", key_bucket, "API key")
        enforce_rate(limiter, f"tenant:{scope.tenant_id}", tenant_bucket, "tenant")
    except RateLimited as refused:
        # Refuse this key's next requests at the door until it may retry (issue #8).
        refusals: RecentRefusals | None = getattr(request.app.state, "refusals", None)
        if refusals is not None and credentials is not None:
            refusals.remember(credentials.credentials, refused)
        raise
    return scope


def require_admin(identity: IdentityDep) -> Identity:
    if identity.role is not KeyRole.ADMIN:
        raise Forbidden("this route needs the admin key", code="admin_key_required")
    return identity


TenantDep = Annotated[TenantScope, Depends(require_tenant)]
AdminDep = Annotated[Identity, Depends(require_admin)]


def admin_if_authenticated(
    request: Request,
    settings: SettingsDep,
    db: Annotated[Database, Depends(get_database)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> bool:
    """Public routes that say more to the admin (``/readyz``): False without a key, True
    with the admin key, 401/403 with any other key (as the admin routes answer)."""
    if credentials is None or not credentials.credentials:
        return False
    require_admin(get_identity(request, settings, db, credentials))
    return True


def require_metrics_access(
    request: Request,
    settings: SettingsDep,
    db: Annotated[Database, Depends(get_database)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """``/metrics`` shows every tenant's activity: it takes ``RAGKB_METRICS_TOKEN`` (what a
    Prometheus scrape job sends) or the admin key."""
    token = settings.observability.metrics_token
    presented = credentials.credentials if credentials is not None else ""
    if (
        token is not None
        and presented
        and hmac.compare_digest(presented.encode(), token.get_secret_value().encode())
    ):
        return
    require_admin(get_identity(request, settings, db, credentials))


def _tenant_work_slot(
    scope: TenantScope, limits: TenantLimits, limiter: Limiter
) -> AbstractContextManager[None]:
    """One of the tenant's ``max_concurrent_queries`` slots, shared by its questions and its
    searches: one tenant's flood waits for itself (429), not for the CPU other tenants need."""
    limit = limits.max_concurrent_queries
    return concurrency_slot(
        limiter, f"queries:{scope.tenant_id}", limit, 300, "questions and searches"
    )


def query_slot(
    scope: TenantDep,
    limits: TenantLimitsDep,
    limiter: LimiterDep,
    db: Annotated[Database, Depends(get_database)],
) -> Iterator[None]:
    """Bound the work one tenant has in flight, and count the question against its daily
    quota (reserved before answering: parallel questions cannot all take the last one)."""
    with _tenant_work_slot(scope, limits, limiter):
        reserve_questions(db, scope, limits)
        yield


def search_slot(scope: TenantDep, limits: TenantLimitsDep, limiter: LimiterDep) -> Iterator[None]:
    """Bound the work one tenant has in flight (searches do not count against the quota)."""
    with _tenant_work_slot(scope, limits, limiter):
        yield


QuerySlotDep = Annotated[None, Depends(query_slot)]
SearchSlotDep = Annotated[None, Depends(search_slot)]
