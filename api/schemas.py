"""Response and request bodies shared by several routers (area-specific ones live with
their router)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    slug: str
    name: str
    disabled: bool
    created_at: datetime


class TenantCreate(BaseModel):
    slug: str = Field(min_length=1, max_length=63, examples=["acme"])
    name: str | None = Field(default=None, max_length=255)


class TenantUpdate(BaseModel):
    name: str | None = Field(default=None, max_length=255)
    disabled: bool | None = None


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant_id: str | None
    role: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreate(BaseModel):
    name: str = Field(default="", max_length=255)


class IssuedKeyOut(ApiKeyOut):
    key: str = Field(description="The API key. Shown once; only its hash is stored.")


class MeOut(BaseModel):
    tenant: TenantOut
    api_key_id: str | None
