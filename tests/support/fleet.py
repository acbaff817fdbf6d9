"""The catalog and the local provider (engines on this machine) with their stored offers, and
provisioning tasks caught instead of run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog.models import Provider
from catalog.services import catalog_load
from fleet import tasks as fleet_tasks
from fleet.drivers import driver
from fleet.offers import offers_refresh_all


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


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Provisioning and termination tasks recorded (their instance ids) instead of run."""
    sent: dict[str, list[str]] = {"provision": [], "terminate": []}
    monkeypatch.setattr(fleet_tasks.instance_provision_task, "delay", sent["provision"].append)
    monkeypatch.setattr(fleet_tasks.instance_terminate_task, "delay", sent["terminate"].append)
    return sent
