"""Admin routes: tenants and their API keys. Only the admin key gets in."""

from __future__ import annotations

from fastapi import APIRouter, status

from api.deps import AdminDep, SessionDep
from api.schemas import ApiKeyCreate, ApiKeyOut, IssuedKeyOut, TenantCreate, TenantOut, TenantUpdate
from core import tenants
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
