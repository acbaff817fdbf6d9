"""Writes of accounts data: users and their personal orgs, organizations, invitations, API keys, SSH keys."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import keys, ssh_keys
from accounts.models import ActivityEvent, ApiKey, ApiKeyKind, Invitation, Membership, Organization, SshKey, User
from accounts.principal import Principal
from accounts.roles import CAN_GRANT_OWNER, CAN_MANAGE_MEMBERS, CAN_WRITE, Role
from gpucloud.core.access_changes import AccessChange, access_change_announce
from gpucloud.core.errors import Conflict, InvalidRequest, NotFound, PermissionDenied
from gpucloud.core.jobs import enqueue

NAME_MAX = 100


def _clean_name(name: str, *, param: str = "name") -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidRequest("Name must not be empty.", param=param)
    if len(cleaned) > NAME_MAX:
        raise InvalidRequest(f"Name must be at most {NAME_MAX} characters.", param=param)
    return cleaned


# --- Users and organizations -----------------------------------------------------------


def organization_create(*, user: User, name: str, personal: bool = False) -> Organization:
    """Create an org with `user` as its owner."""
    with transaction.atomic():
        org = Organization.objects.create(name=_clean_name(name), is_personal=personal, created_by=user)
        Membership.objects.create(org=org, user=user, role=Role.OWNER)
    return org


def organization_create_personal(*, user: User) -> Organization:
    """Every user has exactly one personal org; calling this again returns the existing one."""
    existing = Organization.objects.filter(created_by=user, is_personal=True).first()
    if existing is not None:
        return existing
    return organization_create(user=user, name=f"{user.email.split('@')[0]}'s workspace", personal=True)


def user_create(*, email: str, password: str | None, org_name: str | None = None) -> tuple[User, Organization]:
    """Create a verified user (operator path) with a personal org, or a named org it owns."""
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise Conflict(f"A user with email {email!r} already exists.", param="email")
    with transaction.atomic():
        user = User.objects.create_user(email=email, password=password)
        EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
        org = organization_create_personal(user=user)
        if org_name:
            org = organization_create(user=user, name=org_name)
        invitations_accept_for_user(user=user)
    return user, org


# --- Invitations ----------------------------------------------------------------------


def invitation_create(*, principal: Principal, email: str, role: str) -> Invitation:
    principal.require(CAN_MANAGE_MEMBERS, "inviting members")
    try:
        role_value = Role(role)
    except ValueError:
        raise InvalidRequest(f"Unknown role {role!r}; use owner, admin, member or viewer.", param="role") from None
    if role_value == Role.OWNER:
        principal.require(CAN_GRANT_OWNER, "inviting an owner")
    email = email.strip().lower()
    if "@" not in email:
        raise InvalidRequest(f"{email!r} is not an email address.", param="email")
    org = principal.org
    if Membership.objects.filter(org=org, user__email__iexact=email).exists():
        raise Conflict(f"{email} is already a member of {org.name}.", param="email")
    try:
        with transaction.atomic():
            invitation = Invitation.objects.create(org=org, email=email, role=role_value, invited_by=principal.user)
    except IntegrityError:
        raise Conflict(f"{email} already has a pending invitation to {org.name}.", param="email") from None
    enqueue("accounts.tasks.invitation_email_send_task", invitation.pk)
    return invitation


def invitation_revoke(*, principal: Principal, invitation_id: str) -> None:
    principal.require(CAN_MANAGE_MEMBERS, "revoking invitations")
    updated = Invitation.objects.filter(
        org=principal.org, pk=invitation_id, accepted_at__isnull=True, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
    if not updated:
        raise NotFound(f"No pending invitation {invitation_id!r}.", param="invitation_id")


def invitations_accept_for_user(*, user: User) -> list[Membership]:
    """Join every org that invited one of the user's *verified* addresses.

    Verification matters: without it anyone could sign up as the invited address.
    """
    verified = {
        e.lower() for e in EmailAddress.objects.filter(user=user, verified=True).values_list("email", flat=True)
    }
    if not verified:
        return []
    joined = []
    with transaction.atomic():
        pending = Invitation.objects.select_for_update().filter(accepted_at__isnull=True, revoked_at__isnull=True)
        for invitation in pending.filter(email__in=verified).order_by("pk"):
            membership, _ = Membership.objects.get_or_create(
                org_id=invitation.org_id, user=user, defaults={"role": invitation.role}
            )
            invitation.accepted_at = timezone.now()
            invitation.save(update_fields=["accepted_at"])
            joined.append(membership)
    return joined


def invitation_accept(*, invitation: Invitation, user: User) -> Membership:
    """Accept an invitation from its emailed link: the link proves the invited address, so that
    address, if it is one of the user's, counts as verified. Refused for anyone else's account."""
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update(of=("self",)).select_related("org").get(pk=invitation.pk)
        if not invitation.is_pending:
            raise Conflict("This invitation was already used or revoked; ask for a new one.")
        address = EmailAddress.objects.filter(user=user, email__iexact=invitation.email).first()
        if address is None and user.email.lower() != invitation.email.lower():
            raise PermissionDenied(
                f"This invitation is for {invitation.email}; you are signed in as {user.email}. "
                "Sign out, then open the link again."
            )
        if address is None:
            address = EmailAddress.objects.create(user=user, email=user.email.lower(), primary=True, verified=True)
        elif not address.verified:
            address.verified = True
            address.save(update_fields=["verified"])
        membership, _ = Membership.objects.get_or_create(
            org_id=invitation.org_id, user=user, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.save(update_fields=["accepted_at"])
    return membership


def membership_remove(*, principal: Principal, user_id: int) -> None:
    principal.require(CAN_MANAGE_MEMBERS, "removing members")
    with transaction.atomic():
        memberships = list(Membership.objects.select_for_update().filter(org=principal.org).order_by("pk"))
        target = next((m for m in memberships if m.user_id == user_id), None)
        if target is None:
            raise NotFound(f"No member {user_id} in {principal.org.name}.", param="user_id")
        if target.role == Role.OWNER:
            principal.require(CAN_GRANT_OWNER, "removing an owner")
            if sum(m.role == Role.OWNER for m in memberships) == 1:
                raise Conflict("An organization needs at least one owner; make someone else owner first.")
        target.delete()
        # Their account keys and signed-in sessions stop working in this org in every gateway process.
        access_change_announce(AccessChange(user_id=user_id, org_id=principal.org.pk))


def membership_role_set(*, principal: Principal, user_id: int, role: str) -> Membership:
    """Change a member's role. Admins manage admins, members and viewers; only an owner makes or
    unmakes owners, and the last owner stays an owner."""
    principal.require(CAN_MANAGE_MEMBERS, "changing roles")
    try:
        role_value = Role(role)
    except ValueError:
        raise InvalidRequest(f"Unknown role {role!r}; use owner, admin, member or viewer.", param="role") from None
    with transaction.atomic():
        memberships = list(Membership.objects.select_for_update().filter(org=principal.org).order_by("pk"))
        target = next((m for m in memberships if m.user_id == user_id), None)
        if target is None:
            raise NotFound(f"No member {user_id} in {principal.org.name}.", param="user_id")
        if Role.OWNER in (role_value, target.role):
            principal.require(CAN_GRANT_OWNER, "making or unmaking an owner")
        owners = sum(m.role == Role.OWNER for m in memberships)
        if target.role == Role.OWNER and role_value != Role.OWNER and owners == 1:
            raise Conflict("An organization needs at least one owner; make someone else owner first.", param="role")
        if target.role != role_value:
            target.role = role_value
            target.save(update_fields=["role"])
            access_change_announce(AccessChange(user_id=user_id, org_id=principal.org.pk))
    return target


# --- API keys -------------------------------------------------------------------------


def api_key_create(
    *, principal: Principal, name: str, kind: str, deployment_id: str | None = None, scoped: bool | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns it with its plaintext, which is never stored or shown again.

    A scoped account key starts with access to nothing: grants add deployments (accounts/grants.py).
    Deployment keys are always scoped; `scoped=False` with one is refused rather than ignored."""
    principal.require(CAN_WRITE, "creating API keys")
    try:
        kind_value = ApiKeyKind(kind)
    except ValueError:
        raise InvalidRequest(f"Unknown key kind {kind!r}; use 'account' or 'deployment'.", param="kind") from None
    deployment = None
    if kind_value == ApiKeyKind.DEPLOYMENT:
        if not deployment_id:
            raise InvalidRequest("A deployment key needs deployment_id.", param="deployment_id")
        if scoped is False:
            raise InvalidRequest("Deployment keys are always scoped; omit scoped or send true.", param="scoped")
        # The org's own deployments only (reached through its relation: deployments is a layer above).
        deployment = principal.org.deployments.filter(pk=deployment_id).first()
        if deployment is None:
            raise NotFound(f"No deployment {deployment_id!r}.", param="deployment_id")
    elif deployment_id:
        raise InvalidRequest("Account keys are not tied to a deployment; omit deployment_id.", param="deployment_id")
    new = keys.key_generate(kind_value)
    key = ApiKey.objects.create(
        org=principal.org,
        created_by=principal.user,
        name=_clean_name(name),
        kind=kind_value,
        deployment=deployment,
        scoped=kind_value == ApiKeyKind.DEPLOYMENT or bool(scoped),
        key_hash=new.key_hash,
        last_four=new.last_four,
    )
    return key, new.plaintext


def api_key_revoke(*, principal: Principal, key: ApiKey) -> ApiKey:
    """Revoking is idempotent: a revoked key stays revoked with its first revocation time."""
    principal.require(CAN_WRITE, "revoking API keys")
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db(fields=["revoked_at"])
    access_change_announce(AccessChange(key_id=key.pk))  # refused by every gateway process within a second
    return key


def api_key_regenerate(*, principal: Principal, key: ApiKey) -> tuple[ApiKey, str]:
    """Swap the secret in place: same id, name and grants; the old secret stops working at once."""
    principal.require(CAN_WRITE, "regenerating API keys")
    if key.is_revoked:
        raise Conflict("This key is revoked; create a new key instead.", param="key_id")
    new = keys.key_generate(ApiKeyKind(key.kind))
    key.key_hash, key.last_four, key.regenerated_at = new.key_hash, new.last_four, timezone.now()
    key.save(update_fields=["key_hash", "last_four", "regenerated_at"])
    access_change_announce(AccessChange(key_id=key.pk))
    return key, new.plaintext


def api_key_touch(*, key: ApiKey, min_interval_seconds: int) -> None:
    """Record use, writing at most once per interval so the hot path stays read-only."""
    now = timezone.now()
    if key.last_used_at and (now - key.last_used_at).total_seconds() < min_interval_seconds:
        return
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now


# --- SSH keys -------------------------------------------------------------------------


def ssh_key_add(*, principal: Principal, public_key: str, name: str = "") -> SshKey:
    """Store one OpenSSH public key for the org's pods. Refused (400, nothing written) unless it is
    a supported public key (accounts/ssh_keys.py); 409 if the org already has a key with its
    fingerprint. Without a name, the key's comment (or its type) names it."""
    principal.require(CAN_WRITE, "adding SSH keys")
    try:
        parsed = ssh_keys.ssh_public_key_parse(public_key)
    except ssh_keys.SshKeyInvalid as exc:
        raise InvalidRequest(str(exc), param="public_key") from None
    label = _clean_name(name) if name.strip() else _clean_name(parsed.comment[:NAME_MAX] or parsed.key_type)
    existing = SshKey.objects.filter(org=principal.org, fingerprint=parsed.fingerprint).first()
    if existing is not None:
        raise _ssh_key_duplicate(existing.name, parsed.fingerprint)
    try:
        with transaction.atomic():
            return SshKey.objects.create(
                org=principal.org, created_by=principal.user, name=label, public_key=parsed.line,
                fingerprint=parsed.fingerprint,
            )  # fmt: skip
    except IntegrityError:  # added by a concurrent request since the check above
        raise _ssh_key_duplicate(None, parsed.fingerprint) from None


def _ssh_key_duplicate(name: str | None, fingerprint: str) -> Conflict:
    which = f" as “{name}”" if name else ""
    return Conflict(f"This organization already has the key {fingerprint}{which}.", param="public_key")


def ssh_key_delete(*, principal: Principal, key: SshKey) -> None:
    """Pods launched afterwards no longer get the key."""
    principal.require(CAN_WRITE, "deleting SSH keys")
    SshKey.objects.filter(pk=key.pk, org=principal.org).delete()


def activity_record(*, org: Organization, kind: str, message: str) -> ActivityEvent:
    return ActivityEvent.objects.create(org=org, kind=kind, message=message[:300])
