from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Schema
from pydantic import ConfigDict, Field

from accounts.models import SshKey
from accounts.ssh_keys import MAX_LENGTH, PATTERN, SUPPORTED_TYPES
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


class SshKeyIn(BodyIn):
    # The service's checks (400, saying what to do instead), said here too: the length and the line's
    # form. That its base64 decodes to a key of the declared type no schema can say.
    public_key: str = Field(
        description="One OpenSSH public key line, `type base64 [comment]` (the contents of a .pub file). "
        f"Types: {', '.join(SUPPORTED_TYPES)}; RSA keys of at least 2048 bits. Private keys and SSH2 "
        "(PuTTY) blocks are refused (convert one with `ssh-keygen -i -f key.pub`); 409 if the organization "
        "already has a key with the same fingerprint.",
        json_schema_extra={"minLength": 1, "maxLength": MAX_LENGTH, "pattern": PATTERN},
    )
    name: str | None = Field(default=None, max_length=100, description="Defaults to the key's comment, else its type.")


class SshKeyOut(Schema):
    id: str
    name: str
    key_type: str
    public_key: str = Field(description="Normalised: `type base64 [comment]`.")
    fingerprint: str = Field(description="As `ssh-keygen -l` prints it: `SHA256:` and unpadded base64.")
    created_at: datetime
    created_by: str | None = Field(description="Email of the member who added it")

    @staticmethod
    def resolve_created_by(obj: SshKey) -> str | None:
        return obj.created_by.email if obj.created_by is not None else None
