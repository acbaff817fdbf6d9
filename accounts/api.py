"""REST endpoints of the accounts app: who am I, organizations, members, invitations, API keys, SSH keys."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Router, Status

from accounts import schemas, selectors, services
from accounts.auth import api_principal
from accounts.models import ApiKey, Invitation, Membership, SshKey
from accounts.principal import Principal
from accounts.roles import CAN_READ
from gpucloud.core.errors import NotFound, answers

router = Router(tags=["account"])


def _principal_in_org(request: HttpRequest, org_id: str) -> Principal:
    """The caller acting in `org_id`: a key is bound to its own org; a session user to any of theirs."""
    principal = api_principal(request)
    if principal.api_key is not None or principal.user is None:
        if principal.org.pk != org_id:
            raise NotFound(f"No organization {org_id!r}.", param="org_id")
        return principal
    membership = selectors.membership_get_for_user(principal.user, org_id)
    return Principal(user=principal.user, org=membership.org, role=membership.role)


def _visible_memberships(principal: Principal) -> list[Membership]:
    """A session sees all of its user's orgs; a key sees only the org it belongs to."""
    assert principal.user is not None
    memberships = list(selectors.memberships_for_user(principal.user))
    if principal.api_key is not None:
        memberships = [m for m in memberships if m.org_id == principal.org.pk]
    return memberships


def _org_out(membership: Membership) -> schemas.OrgOut:
    org = membership.org
    return schemas.OrgOut(id=org.pk, name=org.name, role=membership.role, is_personal=org.is_personal)


def _created(key: ApiKey, plaintext: str) -> schemas.ApiKeyCreatedOut:
    shown = schemas.ApiKeyOut.from_orm(key).model_dump(by_alias=True)
    return schemas.ApiKeyCreatedOut(**shown, key=plaintext)


@router.get("/me", response=schemas.MeOut, summary="The caller, their organizations and the current one")
def me(request: HttpRequest) -> dict[str, object]:
    principal = api_principal(request)
    memberships = _visible_memberships(principal)
    current = next(m for m in memberships if m.org_id == principal.org.pk)
    return {
        "user": principal.user,
        "organizations": [_org_out(m) for m in memberships],
        "current_organization": _org_out(current),
        "auth": "api_key" if principal.api_key else "session",
    }


@router.get("/orgs", response=list[schemas.OrgOut], summary="Organizations the caller belongs to")
def orgs_list(request: HttpRequest) -> list[schemas.OrgOut]:
    return [_org_out(m) for m in _visible_memberships(api_principal(request))]


@router.post("/orgs", response={201: schemas.OrgOut}, summary="Create an organization (you become its owner)")
@answers(400)
def orgs_create(request: HttpRequest, payload: schemas.OrgCreateIn) -> Status[schemas.OrgOut]:
    principal = api_principal(request)
    assert principal.user is not None
    org = services.organization_create(user=principal.user, name=payload.name)
    return Status(201, _org_out(selectors.membership_get_for_user(principal.user, org.pk)))


@router.get("/orgs/{org_id}/members", response=list[schemas.MemberOut], summary="Members of an organization")
def members_list(request: HttpRequest, org_id: str) -> list[dict[str, object]]:
    principal = _principal_in_org(request, org_id)
    principal.require(CAN_READ, "listing members")
    return [
        {"user_id": m.user_id, "email": m.user.email, "role": m.role, "joined_at": m.created_at}
        for m in selectors.members_of(principal.org)
    ]


@router.patch("/orgs/{org_id}/members/{user_id}", response=schemas.MemberOut, summary="Change a member's role")
@answers(400, 409)
def members_update(request: HttpRequest, org_id: str, user_id: int, payload: schemas.MemberRoleIn) -> dict[str, object]:
    membership = services.membership_role_set(
        principal=_principal_in_org(request, org_id), user_id=user_id, role=payload.role
    )
    return {"user_id": membership.user_id, "email": membership.user.email, "role": membership.role,
            "joined_at": membership.created_at}  # fmt: skip


@router.delete("/orgs/{org_id}/members/{user_id}", response={204: None}, summary="Remove a member")
@answers(409)
def members_remove(request: HttpRequest, org_id: str, user_id: int) -> Status[None]:
    services.membership_remove(principal=_principal_in_org(request, org_id), user_id=user_id)
    return Status(204, None)


@router.get("/orgs/{org_id}/invitations", response=list[schemas.InvitationOut], summary="Pending invitations")
def invitations_list(request: HttpRequest, org_id: str) -> list[Invitation]:
    principal = _principal_in_org(request, org_id)
    principal.require(CAN_READ, "listing invitations")
    return list(selectors.pending_invitations_of(principal.org))


@router.post(
    "/orgs/{org_id}/invitations",
    response={201: schemas.InvitationOut},
    summary="Invite someone by email; they join when they sign in with that verified address",
)
@answers(400, 409)
def invitations_create(request: HttpRequest, org_id: str, payload: schemas.InvitationIn) -> Status[Invitation]:
    principal = _principal_in_org(request, org_id)
    return Status(201, services.invitation_create(principal=principal, email=payload.email, role=payload.role))


@router.delete("/orgs/{org_id}/invitations/{invitation_id}", response={204: None}, summary="Revoke an invitation")
def invitations_revoke(request: HttpRequest, org_id: str, invitation_id: str) -> Status[None]:
    services.invitation_revoke(principal=_principal_in_org(request, org_id), invitation_id=invitation_id)
    return Status(204, None)


keys_router = Router(tags=["api-keys"])


@keys_router.post(
    "/api-keys",
    response={201: schemas.ApiKeyCreatedOut},
    summary="Create an API key; the secret is in this response only",
)
@answers(400, 404)
def api_keys_create(request: HttpRequest, payload: schemas.ApiKeyCreateIn) -> Status[schemas.ApiKeyCreatedOut]:
    key, plaintext = services.api_key_create(
        principal=api_principal(request), name=payload.name, kind=payload.kind, deployment_id=payload.deployment_id,
        scoped=payload.scoped,
    )  # fmt: skip
    return Status(201, _created(key, plaintext))


@keys_router.get("/api-keys", response=list[schemas.ApiKeyOut], summary="API keys of the current organization")
def api_keys_list(request: HttpRequest) -> QuerySet[ApiKey]:
    principal = api_principal(request)
    principal.require(CAN_READ, "listing API keys")
    return selectors.api_keys_of(principal.org)


@keys_router.delete("/api-keys/{key_id}", response=schemas.ApiKeyOut, summary="Revoke an API key")
@answers(409)
def api_keys_revoke(request: HttpRequest, key_id: str) -> ApiKey:
    principal = api_principal(request)
    key = selectors.api_key_get_for_org(principal.org, key_id)
    return services.api_key_revoke(principal=principal, key=key)


@keys_router.post(
    "/api-keys/{key_id}/regenerate",
    response=schemas.ApiKeyCreatedOut,
    summary="Replace a key's secret; the old secret stops working immediately",
)
@answers(409)
def api_keys_regenerate(request: HttpRequest, key_id: str) -> schemas.ApiKeyCreatedOut:
    principal = api_principal(request)
    key = selectors.api_key_get_for_org(principal.org, key_id)
    key, plaintext = services.api_key_regenerate(principal=principal, key=key)
    return _created(key, plaintext)


ssh_keys_router = Router(tags=["ssh-keys"])


@ssh_keys_router.get("/ssh-keys", response=list[schemas.SshKeyOut], summary="SSH public keys of the organization")
def ssh_keys_list(request: HttpRequest) -> QuerySet[SshKey]:
    principal = api_principal(request)
    principal.require(CAN_READ, "listing SSH keys")
    return selectors.ssh_keys_of(principal.org)


@ssh_keys_router.post(
    "/ssh-keys",
    response={201: schemas.SshKeyOut},
    summary="Add an SSH public key; the organization's pods let its holder in",
)
@answers(400, 409)
def ssh_keys_add(request: HttpRequest, payload: schemas.SshKeyIn) -> Status[SshKey]:
    key = services.ssh_key_add(principal=api_principal(request), public_key=payload.public_key, name=payload.name or "")
    return Status(201, key)


@ssh_keys_router.delete("/ssh-keys/{ssh_key_id}", response={204: None}, summary="Delete an SSH key")
def ssh_keys_delete(request: HttpRequest, ssh_key_id: str) -> Status[None]:
    principal = api_principal(request)
    services.ssh_key_delete(principal=principal, key=selectors.ssh_key_get_for_org(principal.org, ssh_key_id))
    return Status(204, None)
