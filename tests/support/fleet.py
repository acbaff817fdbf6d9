"""The catalog and the local provider (engines on this machine) with their stored offers,
provisioning tasks caught instead of run, engines killed at random ages, creates at once."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.test import Client
from django.utils import timezone

from billing.metering import usage_charge_running
from billing.models import UsageMeter
from catalog.models import Provider
from catalog.services import catalog_load
from fleet import tasks as fleet_tasks
from fleet.drivers import driver
from fleet.models import Instance
from fleet.offers import offers_refresh_all
from fleet.providers.local.driver import LocalDriver


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
    Provider.objects.filter(slug="local").update(
        config={"instances_dir": str(tmp_path), "volumes_dir": str(tmp_path / "volumes"), "slots": 2, "threads": 1}
    )
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


def engines_killed_at_random_ages(
    instance_ids: list[str], instances_dir: Path, rng: random.Random
) -> dict[str, datetime]:
    """Issue 15 §2's scene, ages faked, kills real. Each running instance's launch (and its meter's
    start) moves back 0-10 minutes; beat's usage tick; each engine is SIGKILLed, in random order, at
    a random moment 0-0.5 s after the one before; a last tick bills past the deaths before anything
    has seen them. Returns when each instance's engine was killed."""
    for instance_id in instance_ids:
        earlier = timedelta(seconds=rng.uniform(0, 600))
        Instance.objects.filter(pk=instance_id).update(launched_at=F("launched_at") - earlier)
        UsageMeter.objects.filter(meter_key=instance_id).update(started_at=F("started_at") - earlier)
    usage_charge_running()
    killed = {}
    for instance_id in rng.sample(instance_ids, len(instance_ids)):
        time.sleep(rng.uniform(0, 0.5))
        pid = int(json.loads((instances_dir / instance_id / "instance.json").read_text())["pid"])
        killed[instance_id] = timezone.now()  # before the kill: the witness may see the death before now() returns
        os.kill(pid, signal.SIGKILL)
    time.sleep(rng.uniform(0.3, 0.8))
    usage_charge_running()
    return killed


@contextlib.contextmanager
def engines_peak(local: LocalDriver, tag: str) -> Iterator[list[int]]:
    """The most engines of `tag` seen running at once (its one item), looked at every 5 ms meanwhile."""
    most = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.005):
            most[0] = max(most[0], len(local.list_instances(tag)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield most
    finally:
        done.set()
        watcher.join(10)


def creates_at_once(auth: dict[str, Any], body: dict[str, Any], count: int) -> list[tuple[int, dict[str, Any]]]:
    """`count` POST /api/v1/deployments of `body` at once, each from a thread of its own (its own
    database connection); their statuses and bodies. Anything else that escapes fails the caller."""
    answers: list[tuple[int, dict[str, Any]]] = []
    errors: list[str] = []
    start = threading.Barrier(count)

    def create() -> None:
        try:
            start.wait(30)
            response = Client().post(
                "/api/v1/deployments", data=json.dumps(body), content_type="application/json", **auth
            )
            answers.append((response.status_code, response.json()))
        except Exception as exc:  # what the race is about: anything that escapes is a failure
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    return answers


def direct_url_of(instance_id: str, port: int) -> str:
    """What the instance's provider says the port's own address is (a pod's `connect.http[].direct_url`)."""
    instance = Instance.objects.get(pk=instance_id)
    return driver(instance.provider).port_url(instance.provider_instance_id, port)
