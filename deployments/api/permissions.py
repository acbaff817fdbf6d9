"""REST endpoints of a deployment's permissions (reference/000 RBAC): the scoped keys that may invoke it.

Scoped keys and grants are described in accounts/grants.py. Admins and owners grant and revoke;
anyone in the org may list. Another organization's deployment or key is a 404.
"""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from accounts import grants
from accounts.auth import api_principal
from accounts.models import KeyGrant
from accounts.roles import CAN_READ
from deployments.selectors import deployment_get_for_org
from gpucloud.core.errors import answers
from gpucloud.core.schemas import BodyIn

router = Router(tags=["permissions"])


class PermissionIn(BodyIn):
    api_key_id: str = Field(min_length=1, max_length=40, description="A scoped account key or a deployment key")
    role: str = Field(
        default="inference",
        description="inference: call this deployment (the only role)",
        json_schema_extra={"enum": ["inference"]},
    )


class PermissionOut(Schema):
    id: str
    deployment_id: str
    api_key_id: str
    api_key_name: str
    api_key_kind: str
    masked_key: str
    role: str
    created_at: datetime


def _permission_out(grant: KeyGrant) -> dict[str, object]:
    key = grant.key
    return {
        "id": grant.pk,
        "deployment_id": grant.deployment_id,
        "api_key_id": key.pk,
        "api_key_name": key.name,
        "api_key_kind": key.kind,
        "masked_key": key.masked,
        "role": grant.role,
        "created_at": grant.created_at,
    }


@router.get(
    "/deployments/{deployment_id}/permissions",
    response=list[PermissionOut],
    summary="Keys granted access to this deployment",
)
def permissions_list(request: HttpRequest, deployment_id: str) -> list[dict[str, object]]:
    principal = api_principal(request)
    deployment = deployment_get_for_org(principal.org, deployment_id)
    principal.require(CAN_READ, "listing a deployment's permissions")
    return [_permission_out(grant) for grant in grants.grants_of(deployment)]


@router.post(
    "/deployments/{deployment_id}/permissions",
    response={200: PermissionOut, 201: PermissionOut},
    summary="Grant a scoped API key access (201; 200 when it already has it)",
)
@answers(400, 409)
def permissions_grant(request: HttpRequest, deployment_id: str, payload: PermissionIn) -> Status[dict[str, object]]:
    principal = api_principal(request)
    deployment = deployment_get_for_org(principal.org, deployment_id)
    grant, created = grants.key_grant_create(
        principal=principal, deployment=deployment, key_id=payload.api_key_id, role=payload.role
    )
    return Status(201 if created else 200, _permission_out(grant))


@router.delete(
    "/deployments/{deployment_id}/permissions/{key_id}",
    response={204: None},
    summary="Revoke a key's access to this deployment",
)
def permissions_revoke(request: HttpRequest, deployment_id: str, key_id: str) -> Status[None]:
    principal = api_principal(request)
    deployment = deployment_get_for_org(principal.org, deployment_id)
    grants.key_grant_revoke(principal=principal, deployment=deployment, key_id=key_id)
    return Status(204, None)
