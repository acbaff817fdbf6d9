"""The catalog and the local provider (engines on this machine), and provisioning tasks caught
instead of run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from catalog.fleet import driver
from catalog.models import Provider
from catalog.services import catalog_load


@pytest.fixture
def catalog(db: None) -> None:
    catalog_load()


@pytest.fixture
def fleet(db: None, settings: Any, tmp_path: Path) -> Iterator[str]:
    """The catalog and the local provider, with a tag of its own so tests never see each other's engines."""
    catalog_load()
    tag = f"gpucloud-test-{uuid.uuid4().hex[:8]}"
    settings.GPUCLOUD_FLEET_TAG = tag
    settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 0
    Provider.objects.filter(slug="local").update(config={"instances_dir": str(tmp_path), "slots": 2, "threads": 1})
    yield tag
    local = driver("local")
    for instance in local.list_instances(tag):
        local.terminate(instance.provider_instance_id)


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Provisioning and termination tasks recorded (their instance ids) instead of run."""
    from deployments import tasks as deployment_tasks

    sent: dict[str, list[str]] = {"provision": [], "terminate": []}
    monkeypatch.setattr(deployment_tasks.instance_provision_task, "delay", sent["provision"].append)
    monkeypatch.setattr(deployment_tasks.instance_terminate_task, "delay", sent["terminate"].append)
    return sent
