"""Who am I: the tenant a key belongs to (the portal's sign-in check)."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import SessionDep, TenantDep
from api.schemas import MeOut, TenantOut
from core import tenants

router = APIRouter(prefix="/v1", tags=["tenant"])


@router.get("/me", response_model=MeOut)
def me(scope: TenantDep, session: SessionDep) -> MeOut:
    tenant = tenants.get_tenant(session, scope.tenant_id)
    return MeOut(tenant=TenantOut.model_validate(tenant), api_key_id=scope.api_key_id)
