"""Shared fixtures. Personas (healthchecks style): alice owns an org, bob is her teammate
(member), charlie is a stranger with his own org."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from channels.layers import channel_layers
from django.core.cache import cache

from accounts import services
from accounts.models import ApiKeyKind, Membership, Organization, User
from accounts.principal import Principal
from accounts.roles import Role
from catalog.models import Provider
from catalog.services import catalog_load
from fleet.drivers import driver
from fleet.offers import offers_refresh_all
from gpucloud.celery import app

PASSWORD = "a-long-test-password-42"


@pytest.fixture(autouse=True)
def _test_settings(settings: Any) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True

    app.conf.task_always_eager = True


@pytest.fixture(autouse=True)
def _fresh_channel_layer() -> Any:
    """Each test gets its own channel layer instance: a Redis layer keeps receive state for the event
    loop that used it (one loop per web process in production; one per asyncio.run in tests)."""

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def _clear_cache() -> Any:
    """allauth's rate limits count in the cache; every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


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


def platform_load() -> None:
    """What `manage.py load_catalog` does: the catalog, then every provider's stored offers."""
    catalog_load()
    offers_refresh_all()


@pytest.fixture
def catalog(db: None) -> None:
    platform_load()


@pytest.fixture
def fleet(db: None, settings: Any, tmp_path: Path) -> Iterator[str]:
    """The catalog and the local provider, with a tag of its own so tests never see each other's engines."""
    catalog_load()
    tag = f"gpucloud-test-{uuid.uuid4().hex[:8]}"
    settings.GPUCLOUD_FLEET_TAG = tag
    settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 0
    Provider.objects.filter(slug="local").update(config={"instances_dir": str(tmp_path), "slots": 2, "threads": 1})
    offers_refresh_all()  # the offers as this configuration makes them
    yield tag
    local = driver("local")
    for instance in local.list_instances(tag):
        local.terminate(instance.provider_instance_id)
