"""Effective limits and quotas for a tenant: the settings' defaults, overridden per tenant
through the admin API (stored in ``tenants.limits``), and the quota checks that use them.

Rate limits (requests/s, concurrency) are enforced by ``core.ratelimit`` in the API's
tenant dependency; quotas (documents, stored bytes, questions per day) are checked here
against the database, the source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import RateLimited
from core.models import Document, QueryLog, utcnow
from core.settings import Settings
from core.tenancy import TenantScope, scoped, scoped_count


@dataclass(frozen=True, slots=True)
class TenantLimits:
    rate_limit_key_rps: float
    rate_limit_key_burst: int
    rate_limit_tenant_rps: float
    rate_limit_tenant_burst: int
    max_concurrent_queries: int
    # Quotas; None = unlimited.
    max_documents: int | None
    max_stored_bytes: int | None
    max_queries_per_day: int | None

    @classmethod
    def defaults(cls, settings: Settings) -> TenantLimits:
        return cls(
            rate_limit_key_rps=settings.limits.rate_limit_key_rps,
            rate_limit_key_burst=settings.limits.rate_limit_key_burst,
            rate_limit_tenant_rps=settings.limits.rate_limit_tenant_rps,
            rate_limit_tenant_burst=settings.limits.rate_limit_tenant_burst,
            max_concurrent_queries=settings.limits.max_concurrent_queries_per_tenant,
            max_documents=settings.limits.quota_max_documents,
            max_stored_bytes=settings.limits.quota_max_stored_bytes,
            max_queries_per_day=settings.limits.quota_max_queries_per_day,
        )

    def with_overrides(self, overrides: dict[str, Any] | None) -> TenantLimits:
        known = {f.name for f in fields(self)}
        return replace(self, **{k: v for k, v in (overrides or {}).items() if k in known})


LIMIT_NAMES = tuple(f.name for f in fields(TenantLimits))


def check_upload_quota(
    session: Session, scope: TenantScope, limits: TenantLimits, files: int, size_bytes: int
) -> None:
    """Refuse (429) an upload that would take the tenant past its documents or bytes quota."""
    if limits.max_documents is None and limits.max_stored_bytes is None:
        return
    count, stored = session.execute(
        scoped(
            select(func.count(Document.id), func.coalesce(func.sum(Document.size_bytes), 0)),
            Document,
            scope,
        )
    ).one()
    if limits.max_documents is not None and count + files > limits.max_documents:
        raise RateLimited(
            f"document quota reached ({limits.max_documents} documents): delete some first",
            retry_after=3600,
            code="quota_documents",
        )
    if limits.max_stored_bytes is not None and stored + size_bytes > limits.max_stored_bytes:
        raise RateLimited(
            f"storage quota reached ({limits.max_stored_bytes} bytes): delete some first",
            retry_after=3600,
            code="quota_bytes",
        )


def check_query_quota(session: Session, scope: TenantScope, limits: TenantLimits) -> None:
    """Refuse (429, retry after the next UTC midnight) past the questions-per-day quota."""
    if limits.max_queries_per_day is None:
        return
    now = utcnow()
    midnight = datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)
    asked = session.scalar(scoped_count(QueryLog, scope, QueryLog.created_at >= midnight))
    if (asked or 0) >= limits.max_queries_per_day:
        reset = (midnight + timedelta(days=1) - now).total_seconds()
        raise RateLimited(
            f"daily question quota reached ({limits.max_queries_per_day})",
            retry_after=reset,
            code="quota_queries",
        )
