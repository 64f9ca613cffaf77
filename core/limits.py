"""Effective limits and quotas for a tenant: the settings' defaults, overridden per tenant
through the admin API (stored in ``tenants.limits``), and the quota checks that use them.

Rate limits (requests/s, concurrency) are enforced by ``core.ratelimit`` in the API's
tenant dependency; quotas (documents, stored bytes, questions per day) are checked here
against the database, the source of truth, under the tenant's row lock
(``core.tenancy.lock_tenant``): a check and what it admits are one step, so parallel
requests cannot all pass it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db import Database
from core.errors import RateLimited
from core.models import Document, QuestionUsage, utcnow
from core.settings import Settings
from core.tenancy import TenantScope, lock_tenant, scoped


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
    """Refuse (429) an upload that would take the tenant past its documents or bytes quota.
    With a quota, this takes the tenant's row lock first: the caller adds its documents in
    the same transaction, and the next upload's check waits for that commit and counts
    them."""
    if limits.max_documents is None and limits.max_stored_bytes is None:
        return
    lock_tenant(session, scope)
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


def reserve_questions(
    db: Database, scope: TenantScope, limits: TenantLimits, count: int = 1
) -> None:
    """Count ``count`` questions against today's (UTC) quota before they are answered, or
    refuse them all (429, retry after the next UTC midnight) when they do not fit. Its own
    short transaction under the tenant's row lock: the reservation is committed before the
    (long) answer starts, and no lock is held while answering."""
    if limits.max_queries_per_day is None:
        return
    now = utcnow()
    with db.session() as session:
        lock_tenant(session, scope)
        usage = session.scalars(
            scoped(select(QuestionUsage), QuestionUsage, scope).where(
                QuestionUsage.day == now.date()
            )
        ).one_or_none()
        asked = usage.questions if usage is not None else 0
        if asked + count > limits.max_queries_per_day:
            midnight = datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)
            reset = (midnight + timedelta(days=1) - now).total_seconds()
            left = max(limits.max_queries_per_day - asked, 0)
            detail = f"; {left} left today, {count} asked at once" if count > 1 and left else ""
            raise RateLimited(
                f"daily question quota reached ({limits.max_queries_per_day}){detail}",
                retry_after=reset,
                code="quota_queries",
            )
        if usage is None:
            session.add(QuestionUsage(tenant_id=scope.tenant_id, day=now.date(), questions=count))
        else:
            usage.questions = asked + count
