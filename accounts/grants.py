"""Scoped keys and their grants: which deployments a key may invoke.

A scoped key has no account-level access; it may invoke only
- a deployment key (always scoped): its own deployment, and the deployments granted to it;
- a scoped account key: the deployments granted to it (none at first).
Unscoped account keys and browser sessions are not limited here: their role in the org decides.

Grants are managed by org admins and owners, on keys and deployments of their own org only.
The gateway reads them with the key (cached); a change is announced to its caches when it commits
(gpucloud/core/access_changes.py).
"""

from __future__ import annotations

from typing import Any, Protocol

from django.db.models import QuerySet

from accounts.models import ApiKey, ApiKeyKind, GrantRole, KeyGrant, Organization
from accounts.principal import Principal
from accounts.roles import CAN_MANAGE_ACCESS
from gpucloud.core.access_changes import AccessChange, access_change_announce
from gpucloud.core.errors import Conflict, InvalidRequest, NotFound, PermissionDenied


class Deployment(Protocol):
    """What a grant names: a deployment (deployments.models.Deployment, a layer above accounts)."""

    org_id: str

    @property
    def pk(self) -> Any: ...


ROLES = ", ".join(repr(role.value) for role in GrantRole)


# --- Reads -----------------------------------------------------------------------------


def grants_of(deployment: Deployment) -> QuerySet[KeyGrant]:
    return KeyGrant.objects.filter(deployment_id=deployment.pk).select_related("key").order_by("created_at", "pk")


def grantable_keys(deployment: Deployment) -> QuerySet[ApiKey]:
    """The org's keys a grant on `deployment` could name and does not yet: live scoped keys other
    than the deployment's own."""
    return (
        ApiKey.objects.filter(org_id=deployment.org_id, scoped=True, revoked_at__isnull=True)
        .exclude(deployment_id=deployment.pk)
        .exclude(grants__deployment_id=deployment.pk)
        .order_by("name", "pk")
    )


def invocable_deployments(key: ApiKey) -> frozenset[str] | None:
    """The ids of the deployments a scoped key may invoke; None for an unscoped key (not limited)."""
    if not key.scoped:
        return None
    granted = KeyGrant.objects.filter(key=key, role=GrantRole.INFERENCE).values_list("deployment_id", flat=True)
    own = {key.deployment_id} if key.deployment_id else set()
    return frozenset(granted) | own


def scoped_key_invoke_check(*, key: ApiKey, deployment_id: str | None) -> None:
    """Raise unless the scoped `key` may invoke `deployment_id`: 404 when the org has no such
    deployment (another tenant's is as absent as an unknown one), 403 when it is not granted."""
    if deployment_id is None:
        raise PermissionDenied(SCOPED_KEY_REFUSED)
    if not Organization.objects.filter(pk=key.org_id, deployments__pk=deployment_id).exists():
        raise NotFound(f"No deployment {deployment_id!r}.", param="deployment_id")
    allowed = invocable_deployments(key)
    if allowed is not None and deployment_id not in allowed:
        raise PermissionDenied(not_granted_message(deployment_id))


SCOPED_KEY_REFUSED = (
    "This key is scoped: it may only invoke the deployments it was granted (through /v1/ or "
    "POST /api/v1/deployments/{id}/chat/completions). Use an unscoped account key (gpc_live_) "
    "or sign in for the management API."
)


def not_granted_message(target: str) -> str:
    return (
        f"This key may not invoke '{target}': a scoped key reaches only the deployments it was granted "
        "(an org admin grants them with POST /api/v1/deployments/{id}/permissions)."
    )


# --- Writes ----------------------------------------------------------------------------


def key_grant_create(*, principal: Principal, deployment: Deployment, key_id: str, role: str) -> tuple[KeyGrant, bool]:
    """Let a scoped key of the org invoke `deployment`. Idempotent: granting again returns the
    existing grant, with False for "not created"."""
    principal.require(CAN_MANAGE_ACCESS, "granting keys access to deployments")
    role_value = _role(role)
    key = _grantable_key(principal, deployment, key_id)
    grant, created = KeyGrant.objects.get_or_create(
        key=key, deployment=deployment, defaults={"role": role_value, "created_by": principal.user}
    )
    if created:
        access_change_announce(AccessChange(key_id=key.pk))
    return grant, created


def key_grant_revoke(*, principal: Principal, deployment: Deployment, key_id: str) -> None:
    principal.require(CAN_MANAGE_ACCESS, "revoking keys' access to deployments")
    deleted, _ = KeyGrant.objects.filter(deployment_id=deployment.pk, key_id=key_id, key__org=principal.org).delete()
    if not deleted:
        raise NotFound(f"API key {key_id!r} has no grant on deployment {deployment.pk}.", param="key_id")
    access_change_announce(AccessChange(key_id=key_id))


def _role(role: str) -> GrantRole:
    try:
        return GrantRole(role)
    except ValueError:
        raise InvalidRequest(f"Unknown role {role!r}; use {ROLES}.", param="role") from None


def _grantable_key(principal: Principal, deployment: Deployment, key_id: str) -> ApiKey:
    """The org's key that a grant can name. Another org's key is as unknown as a made-up id."""
    key = ApiKey.objects.filter(org=principal.org, pk=key_id).first()
    if key is None:
        raise NotFound(f"No API key {key_id!r}.", param="api_key_id")
    if key.is_revoked:
        raise Conflict(f"API key {key_id!r} is revoked; a grant would never be used.", param="api_key_id")
    # Like a revoked key, these are the key's state, not a malformed request: 409.
    if not key.scoped:
        raise Conflict(
            f"API key {key_id!r} is an unscoped account key: it can already invoke every deployment of "
            f"{principal.org.name!r}. Grants are for deployment keys and scoped account keys "
            "(created with scoped: true).",
            param="api_key_id",
        )
    if key.kind == ApiKeyKind.DEPLOYMENT and key.deployment_id == deployment.pk:
        raise Conflict(
            f"API key {key_id!r} is this deployment's own key; it can invoke it already.", param="api_key_id"
        )
    return key
