"""Reads of accounts data. Every lookup of a tenant object goes through an org-scoped helper
that raises NotFound (404) for objects of other organizations."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import ApiKey, Invitation, Membership, Organization, SshKey, User
from gpucloud.core.errors import NotFound


def memberships_for_user(user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("org").order_by("-org__is_personal", "org__name")


def membership_for(user: User, org_id: str) -> Membership | None:
    return Membership.objects.filter(user=user, org_id=org_id).select_related("org").first()


def membership_get_for_user(user: User, org_id: str) -> Membership:
    membership = membership_for(user, org_id)
    if membership is None:
        raise NotFound(f"No organization {org_id!r}.", param="org_id")
    return membership


def default_membership(user: User) -> Membership | None:
    """The org a user lands in: the personal one, else the oldest membership."""
    return (
        Membership.objects.filter(user=user).select_related("org").order_by("-org__is_personal", "created_at").first()
    )


def members_of(org: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(org=org).select_related("user").order_by("created_at")


def pending_invitations_of(org: Organization) -> QuerySet[Invitation]:
    return Invitation.objects.filter(org=org, accepted_at__isnull=True, revoked_at__isnull=True).order_by("created_at")


def api_keys_of(org: Organization) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(org=org).select_related("deployment", "created_by").order_by("-created_at")


def api_key_get_for_org(org: Organization, key_id: str) -> ApiKey:
    key = ApiKey.objects.filter(org=org, pk=key_id).select_related("deployment").first()
    if key is None:
        raise NotFound(f"No API key {key_id!r}.", param="key_id")
    return key


def ssh_keys_of(org: Organization) -> QuerySet[SshKey]:
    return SshKey.objects.filter(org=org).select_related("created_by").order_by("-created_at", "pk")


def ssh_key_get_for_org(org: Organization, ssh_key_id: str) -> SshKey:
    key = SshKey.objects.filter(org=org, pk=ssh_key_id).select_related("created_by").first()
    if key is None:
        raise NotFound(f"No SSH key {ssh_key_id!r}.", param="ssh_key_id")
    return key
