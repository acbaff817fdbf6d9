"""Who is calling: the resolved identity every API and page handler works with."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import ApiKey, ApiKeyKind, Organization, User
from accounts.roles import Role, role_at_least
from gpucloud.core.errors import PermissionDenied


@dataclass(frozen=True)
class Principal:
    user: User | None  # None only for a deployment key whose creator was deleted
    org: Organization
    role: str
    api_key: ApiKey | None = None

    @property
    def via_deployment_key(self) -> bool:
        return self.api_key is not None and self.api_key.kind == ApiKeyKind.DEPLOYMENT

    @property
    def via_scoped_key(self) -> bool:
        """A key limited to the deployments granted to it (every deployment key, and account keys
        created scoped): no account-level access (accounts/grants.py)."""
        return self.api_key is not None and self.api_key.scoped

    def require(self, minimum: Role, action: str) -> None:
        """Raise 403 unless the caller's role in the org is at least `minimum`."""
        if not role_at_least(self.role, minimum):
            raise PermissionDenied(
                f"Your role in {self.org.name!r} is {self.role}; {action} needs {minimum.label.lower()} or higher."
            )
