"""Chat workspaces mapped to tenants: the operations the admin API and the bots share.

A workspace maps to exactly one tenant; the bot answers a workspace's questions only
from that tenant's documents. Secrets are encrypted before they reach the database.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound
from core.models import ChatIntegration, Tenant
from core.secrets import SecretBox
from core.tenancy import TenantScope, scoped


@dataclass(frozen=True, slots=True)
class ResolvedWorkspace:
    """A workspace with its secrets decrypted, for one request's use only."""

    integration_id: str
    platform: str
    external_id: str
    scope: TenantScope
    bot_token: str
    signing_secret: str


def add_integration(
    session: Session,
    box: SecretBox,
    tenant: Tenant,
    *,
    platform: str,
    external_id: str,
    bot_token: str,
    signing_secret: str,
) -> ChatIntegration:
    exists = session.scalar(
        select(ChatIntegration.id).where(
            ChatIntegration.platform == platform, ChatIntegration.external_id == external_id
        )
    )
    if exists is not None:
        raise Conflict(
            f"{platform} workspace {external_id!r} is already mapped to a tenant",
            code="workspace_exists",
        )
    row = ChatIntegration(
        tenant_id=tenant.id,
        platform=platform,
        external_id=external_id,
        bot_token_encrypted=box.encrypt(bot_token),
        signing_secret_encrypted=box.encrypt(signing_secret),
    )
    session.add(row)
    session.flush()
    return row


def list_integrations(session: Session, tenant: Tenant) -> list[ChatIntegration]:
    stmt = scoped(select(ChatIntegration), ChatIntegration, TenantScope.of(tenant))
    return list(session.scalars(stmt.order_by(ChatIntegration.created_at)))


def remove_integration(session: Session, platform: str, external_id: str) -> None:
    row = _find(session, platform, external_id)
    if row is None:
        raise NotFound(
            f"{platform} workspace {external_id!r} not found", code="workspace_not_found"
        )
    session.delete(row)
    session.flush()


def resolve_workspace(
    session: Session, box: SecretBox, platform: str, external_id: str
) -> ResolvedWorkspace | None:
    """The workspace and its (enabled) tenant, or None when unknown or disabled."""
    row = _find(session, platform, external_id)
    if row is None:
        return None
    return _resolved(session, box, row)


def all_signing_secrets(session: Session, box: SecretBox, platform: str) -> list[str]:
    """Every workspace's signing secret: for platform requests that name no workspace
    (Slack's url_verification), which are accepted if any of them signed it."""
    stmt = select(ChatIntegration.signing_secret_encrypted).where(
        ChatIntegration.platform == platform
    )
    return [box.decrypt(value) for value in session.scalars(stmt)]


def _find(session: Session, platform: str, external_id: str) -> ChatIntegration | None:
    return session.scalar(
        select(ChatIntegration).where(
            ChatIntegration.platform == platform, ChatIntegration.external_id == external_id
        )
    )


def _resolved(session: Session, box: SecretBox, row: ChatIntegration) -> ResolvedWorkspace | None:
    tenant = session.get(Tenant, row.tenant_id)
    if tenant is None or tenant.disabled:
        return None
    return ResolvedWorkspace(
        integration_id=row.id,
        platform=row.platform,
        external_id=row.external_id,
        scope=TenantScope.of(tenant),
        bot_token=box.decrypt(row.bot_token_encrypted),
        signing_secret=box.decrypt(row.signing_secret_encrypted),
    )
