"""Admin routes: tenants and their API keys. Only the admin key gets in."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from api.deps import AdminDep, SessionDep, SettingsDep
from api.schemas import (
    ApiKeyCreate,
    ApiKeyOut,
    ChatWorkspaceOut,
    IssuedKeyOut,
    SlackWorkspaceIn,
    TenantCreate,
    TenantLimitsIn,
    TenantLimitsOut,
    TenantOut,
    TenantUpdate,
    limits_out,
)
from core import chat_integrations, tenants
from core.models import KeyRole

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/tenants", status_code=status.HTTP_201_CREATED, response_model=TenantOut)
def create_tenant(body: TenantCreate, session: SessionDep, _: AdminDep) -> TenantOut:
    tenant = tenants.create_tenant(session, body.slug, body.name)
    return TenantOut.model_validate(tenant)


@router.get("/tenants", response_model=list[TenantOut])
def list_tenants(session: SessionDep, _: AdminDep) -> list[TenantOut]:
    return [TenantOut.model_validate(t) for t in tenants.list_tenants(session)]


@router.get("/tenants/{tenant}", response_model=TenantOut)
def get_tenant(tenant: str, session: SessionDep, _: AdminDep) -> TenantOut:
    return TenantOut.model_validate(tenants.get_tenant(session, tenant))


@router.patch("/tenants/{tenant}", response_model=TenantOut)
def update_tenant(tenant: str, body: TenantUpdate, session: SessionDep, _: AdminDep) -> TenantOut:
    row = tenants.update_tenant(session, tenant, name=body.name, disabled=body.disabled)
    return TenantOut.model_validate(row)


@router.get("/tenants/{tenant}/limits", response_model=TenantLimitsOut)
def get_limits(
    tenant: str, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> TenantLimitsOut:
    return limits_out(tenants.get_tenant(session, tenant), settings)


@router.patch("/tenants/{tenant}/limits", response_model=TenantLimitsOut)
def update_limits(
    tenant: str, body: TenantLimitsIn, session: SessionDep, settings: SettingsDep, _: AdminDep
) -> TenantLimitsOut:
    """Override the default limits and quotas for one tenant (null: back to the default)."""
    row = tenants.set_limit_overrides(session, tenant, body.model_dump(exclude_unset=True))
    return limits_out(row, settings)


@router.post(
    "/tenants/{tenant}/keys", status_code=status.HTTP_201_CREATED, response_model=IssuedKeyOut
)
def create_key(tenant: str, body: ApiKeyCreate, session: SessionDep, _: AdminDep) -> IssuedKeyOut:
    row = tenants.get_tenant(session, tenant)
    issued = tenants.issue_key(session, role=KeyRole.TENANT, tenant=row, name=body.name)
    out = ApiKeyOut.model_validate(issued.key)
    return IssuedKeyOut(**out.model_dump(), key=issued.plaintext)


@router.get("/tenants/{tenant}/keys", response_model=list[ApiKeyOut])
def list_keys(tenant: str, session: SessionDep, _: AdminDep) -> list[ApiKeyOut]:
    row = tenants.get_tenant(session, tenant)
    return [ApiKeyOut.model_validate(k) for k in tenants.list_keys(session, row)]


@router.delete("/keys/{key}", response_model=ApiKeyOut)
def revoke_key(key: str, session: SessionDep, _: AdminDep) -> ApiKeyOut:
    """Revoke a key by id or prefix. Revoking twice is harmless."""
    return ApiKeyOut.model_validate(tenants.revoke_key(session, key))


@router.post(
    "/tenants/{tenant}/slack", status_code=status.HTTP_201_CREATED, response_model=ChatWorkspaceOut
)
def add_slack_workspace(
    tenant: str, body: SlackWorkspaceIn, request: Request, session: SessionDep, _: AdminDep
) -> ChatWorkspaceOut:
    """Map a Slack workspace (team id) to this tenant. Its secrets are stored encrypted
    and never returned."""
    row = chat_integrations.add_integration(
        session,
        request.app.state.secret_box,
        tenants.get_tenant(session, tenant),
        platform="slack",
        external_id=body.team_id,
        bot_token=body.bot_token.get_secret_value(),
        signing_secret=body.signing_secret.get_secret_value(),
    )
    return ChatWorkspaceOut.model_validate(row)


@router.get("/tenants/{tenant}/slack", response_model=list[ChatWorkspaceOut])
def list_slack_workspaces(tenant: str, session: SessionDep, _: AdminDep) -> list[ChatWorkspaceOut]:
    rows = chat_integrations.list_integrations(session, tenants.get_tenant(session, tenant))
    return [ChatWorkspaceOut.model_validate(r) for r in rows if r.platform == "slack"]


@router.delete("/slack/{team_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_slack_workspace(team_id: str, session: SessionDep, _: AdminDep) -> None:
    chat_integrations.remove_integration(session, "slack", team_id)
