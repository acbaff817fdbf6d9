from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import Field

from gpucloud.core.schemas import BodyIn


class OrgOut(Schema):
    id: str
    name: str
    role: str
    is_personal: bool


class UserOut(Schema):
    id: int
    email: str
    date_joined: datetime


class MeOut(Schema):
    user: UserOut
    organizations: list[OrgOut]
    current_organization: OrgOut
    auth: Literal["api_key", "session"]


class OrgCreateIn(BodyIn):
    name: str = Field(min_length=1, max_length=100)


class MemberOut(Schema):
    user_id: int
    email: str
    role: str
    joined_at: datetime


class MemberRoleIn(BodyIn):
    role: str = Field(description="owner, admin, member or viewer")


class InvitationIn(BodyIn):
    email: str = Field(min_length=3, max_length=254)
    role: Literal["owner", "admin", "member", "viewer"] = "member"


class InvitationOut(Schema):
    id: str
    email: str
    role: str
    created_at: datetime


class ApiKeyCreateIn(BodyIn):
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["account", "deployment"] = "account"
    deployment_id: str | None = None
    scoped: bool | None = Field(
        default=None,
        description="Account keys: true for a key that can only invoke the deployments granted to it "
        "(POST /deployments/{id}/permissions) and has no account-level access. Deployment keys are always scoped.",
    )


class ApiKeyOut(Schema):
    id: str
    name: str
    kind: str
    deployment_id: str | None
    scoped: bool
    masked_key: str = Field(alias="masked")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The secret. Shown only in this response; store it now.")
