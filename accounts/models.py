"""Users, organizations, memberships, invitations, API keys and SSH keys.

Every billable or addressable resource belongs to an Organization; users reach it
through a Membership whose role says what they may do.
"""

from __future__ import annotations

from typing import ClassVar

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.keys import PREFIXES, ApiKeyKind
from accounts.roles import Role
from gpucloud.core.ids import new_id, new_invitation_id, new_key_id, new_org_id, new_ssh_key_id


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: object) -> User:
        if not email:
            raise ValueError("A user needs an email address")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **extra)


class User(AbstractUser):
    """A person. Signs in with email; has no username."""

    username = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects = UserManager()  # type: ignore[misc,assignment]

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email


class Organization(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_org_id, editable=False)
    name = models.CharField(max_length=100)
    is_personal = models.BooleanField(default=False)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.org_id} as {self.role}"


class Invitation(models.Model):
    """An email address asked to join an org; accepted when that address signs in verified."""

    id = models.CharField(primary_key=True, max_length=40, default=new_invitation_id, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "org",
                Lower("email"),
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_pending_per_email",
            )
        ]

    def __str__(self) -> str:
        return f"{self.email} to {self.org_id} as {self.role}"

    @property
    def is_pending(self) -> bool:
        return self.accepted_at is None and self.revoked_at is None


class ApiKey(models.Model):
    """A bearer credential. Only a SHA-256 of the secret is stored (see accounts/keys.py)."""

    id = models.CharField(primary_key=True, max_length=40, default=new_key_id, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="api_keys")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=ApiKeyKind.choices)
    deployment = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    # A scoped key has no account-level access: it may only invoke the deployments it is granted
    # (KeyGrant). Deployment keys are always scoped (their own deployment is an implicit grant).
    scoped = models.BooleanField(default=False)
    key_hash = models.CharField(max_length=64, unique=True)
    last_four = models.CharField(max_length=4)
    created_at = models.DateTimeField(default=timezone.now)
    regenerated_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind="account", deployment__isnull=True)
                | models.Q(kind="deployment", deployment__isnull=False),
                name="apikey_deployment_matches_kind",
            ),
            models.CheckConstraint(
                condition=models.Q(kind="account") | models.Q(scoped=True), name="apikey_deployment_keys_scoped"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def masked(self) -> str:
        return f"{PREFIXES[ApiKeyKind(self.kind)]}••••{self.last_four}"


class GrantRole(models.TextChoices):
    INFERENCE = "inference", "Inference"  # `deployment:invoke`: call the deployment through the gateway


def new_grant_id() -> str:
    return new_id("grant")


class KeyGrant(models.Model):
    """Lets a scoped key (a scoped account key, or a deployment key beyond its own deployment)
    invoke one deployment. Key and deployment belong to the same org (accounts/grants.py checks)."""

    id = models.CharField(primary_key=True, max_length=40, default=new_grant_id, editable=False)
    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="grants")
    deployment = models.ForeignKey("deployments.Deployment", on_delete=models.CASCADE, related_name="key_grants")
    role = models.CharField(max_length=12, choices=GrantRole.choices, default=GrantRole.INFERENCE)
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "deployment"], name="keygrant_one_per_key_deployment")]

    def __str__(self) -> str:
        return f"{self.key_id} may {self.role} {self.deployment_id}"


class SshKey(models.Model):
    """An SSH public key of the organization: its pods let the holder of the private key in.

    The org's, not a person's: pods belong to the org, any member with write access launches them,
    and a teammate's key must keep working on a pod someone else started. `public_key` is the
    normalised line and `fingerprint` its SHA256 (accounts/ssh_keys.py), unique within the org."""

    id = models.CharField(primary_key=True, max_length=40, default=new_ssh_key_id, editable=False)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="ssh_keys")
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="ssh_keys")
    name = models.CharField(max_length=100)
    public_key = models.TextField()
    fingerprint = models.CharField(max_length=60)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "fingerprint"], name="sshkey_one_per_org_fingerprint")]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint})"

    @property
    def key_type(self) -> str:
        return self.public_key.split(" ", 1)[0]


class ActivityEvent(models.Model):
    """What happened in an organization, in words, for its dashboard's recent-activity list."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="activity")
    kind = models.CharField(max_length=40)
    message = models.CharField(max_length=300)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.org_id} {self.kind}: {self.message}"
