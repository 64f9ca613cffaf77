"""Response and request bodies shared by several routers (area-specific ones live with
their router)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, SecretStr


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


class SlackWorkspaceIn(BaseModel):
    team_id: str = Field(pattern=r"^[A-Z0-9]{2,32}$", examples=["T0123ABCD"])
    bot_token: SecretStr = Field(description="The workspace's bot token (xoxb-...).")
    signing_secret: SecretStr = Field(description="The Slack app's signing secret.")


class ChatWorkspaceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    tenant_id: str
    platform: str
    external_id: str = Field(description="The workspace id on its platform (Slack team id).")
    created_at: datetime


class TenantLimitsIn(BaseModel):
    """Overrides of the default limits for one tenant. Omitted fields stay as they are;
    null removes the override (back to the default)."""

    model_config = ConfigDict(extra="forbid")

    rate_limit_key_rps: float | None = Field(default=None, gt=0)
    rate_limit_key_burst: int | None = Field(default=None, ge=1)
    rate_limit_tenant_rps: float | None = Field(default=None, gt=0)
    rate_limit_tenant_burst: int | None = Field(default=None, ge=1)
    max_concurrent_queries: int | None = Field(default=None, ge=1)
    max_documents: int | None = Field(default=None, ge=0)
    max_stored_bytes: int | None = Field(default=None, ge=0)
    max_queries_per_day: int | None = Field(default=None, ge=0)


class TenantLimitsOut(BaseModel):
    overrides: dict[str, float | int]
    effective: dict[str, float | int | None]
