"""Organization roles and what each may do. Higher roles include everything below them."""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def role_at_least(role: str, minimum: Role) -> bool:
    return _RANK[Role(role)] >= _RANK[minimum]


# What each action needs. Viewers read; members run workloads and hold keys;
# admins manage people and money; owners can hand out ownership.
CAN_READ = Role.VIEWER
CAN_WRITE = Role.MEMBER
CAN_INVOKE = Role.MEMBER  # `deployment:invoke`: call the org's deployments through the gateway
CAN_MANAGE_MEMBERS = Role.ADMIN
CAN_MANAGE_ACCESS = Role.ADMIN  # grant and revoke scoped keys' access to deployments
CAN_GRANT_OWNER = Role.OWNER
