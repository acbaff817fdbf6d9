"""Personas (healthchecks style): alice owns an org, bob is her teammate (member), charlie is a
stranger with his own org. Each has an account API key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from accounts import services
from accounts.models import ApiKeyKind, Membership, Organization, User
from accounts.principal import Principal
from accounts.roles import Role

PASSWORD = "a-long-test-password-42"


@dataclass
class Persona:
    user: User
    org: Organization
    key: str  # an account API key (plaintext)

    @property
    def auth(self) -> dict[str, Any]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.key}"}


def make_persona(email: str, *, org_name: str | None = None) -> Persona:
    user, org = services.user_create(email=email, password=PASSWORD, org_name=org_name)
    _, plaintext = services.api_key_create(
        principal=Principal(user=user, org=org, role=Role.OWNER), name="default", kind=ApiKeyKind.ACCOUNT
    )
    return Persona(user=user, org=org, key=plaintext)


@pytest.fixture
def alice(db: None) -> Persona:
    return make_persona("alice@example.com", org_name="Alice AI")


@pytest.fixture
def bob(alice: Persona) -> Persona:
    """A member of alice's org; his key acts in alice's org."""
    user, _personal = services.user_create(email="bob@example.com", password=PASSWORD)
    Membership.objects.create(org=alice.org, user=user, role=Role.MEMBER)
    _, plaintext = services.api_key_create(
        principal=Principal(user=user, org=alice.org, role=Role.MEMBER), name="bob", kind=ApiKeyKind.ACCOUNT
    )
    return Persona(user=user, org=alice.org, key=plaintext)


@pytest.fixture
def charlie(db: None) -> Persona:
    return make_persona("charlie@example.com", org_name="Charlie Corp")
