from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import ConfigDict, Field

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
    role: str = Field(
        description="owner, admin, member or viewer", json_schema_extra={"enum": ["owner", "admin", "member", "viewer"]}
    )


class InvitationIn(BodyIn):
    email: str = Field(min_length=3, max_length=254, json_schema_extra={"pattern": "@"})  # the service's check
    role: Literal["owner", "admin", "member", "viewer"] = "member"


class InvitationOut(Schema):
    id: str
    email: str
    role: str
    created_at: datetime


class ApiKeyCreateIn(BodyIn):
    # What the service checks (400 with the reason), said in the description too: a deployment key
    # names its deployment and is scoped; an account key names none.
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"kind": {"const": "deployment"}}, "required": ["kind"]},
            "then": {
                "properties": {"deployment_id": {"type": "string", "minLength": 1}, "scoped": {"enum": [True, None]}},
                "required": ["deployment_id"],
            },
            "else": {"properties": {"deployment_id": {"type": "null"}}},
        }
    )

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
