"""Deleting a deployment while its replica's launch is being recorded (issue 15 §1): both take the
deployment's row and the instance's, and PostgreSQL found a deadlock when they took them in opposite
orders (delete: deployment then instances; the launch: instance then deployment), answering the
DELETE 500 and leaving the deployment billing. One order everywhere, deployment first, and no pair
of them ever waits on the other in a cycle."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from accounts.principal import Principal
from accounts.roles import Role
from deployments.models import Deployment, DeploymentStatus
from deployments.services import deployment_create, deployment_delete
from fleet import provisioning
from fleet import tasks as fleet_tasks
from fleet.models import FINAL_STATES, Instance
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.personas import Persona

pytestmark = [
    pytest.mark.slow,  # 200 create/delete pairs: about 20 s
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock order is a PostgreSQL property"),
]
PAIRS = 200
LANES = 2
USD = 1_000_000


@pytest.fixture
def cloud(settings: Any) -> Iterator[str]:
    with sim_cloud.sole_provider(settings, {"h100": {"price": 4_410_000, "capacity": 1000}}) as tag:
        yield tag


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Launches and terminations are recorded, not run: the test runs each where the race needs it."""
    sent: dict[str, list[str]] = {"provision": [], "terminate": []}
    monkeypatch.setattr(fleet_tasks.instance_provision_task, "delay", sent["provision"].append)
    monkeypatch.setattr(fleet_tasks.instance_terminate_task, "delay", sent["terminate"].append)
    monkeypatch.setattr(fleet_tasks.instance_wait_ready_task, "delay", lambda *args: None)
    return sent


def in_thread(work: Any, errors: list[str]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except Exception as exc:  # what the race is about: a deadlock, or anything else
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    return threading.Thread(target=run)


def test_create_then_delete_at_random_spacing_never_deadlocks_nor_leaves_anything_running(
    alice: Persona, cloud: str, queued: dict[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """PAIRS pairs, in LANES lanes at once (each a create, then its launch and a DELETE 0-20 ms
    apart, in threads of their own), then the terminations the workers would run."""
    fund(alice.org, 100_000 * USD)
    owner = Principal(user=alice.user, org=alice.org, role=Role.OWNER)
    errors: list[str] = []

    def lane(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311  (a repeatable spacing, not a secret)
        for _ in range(PAIRS // LANES):
            deployment = deployment_create(principal=owner, name="race", model_id="llama-3.1-8b-instruct",
                                           gpu_type="h100", region="atl1")  # fmt: skip
            instance_id = Instance.objects.get(deployment=deployment).pk

            def delete(spacing: float = rng.uniform(0, 0.02), deployment: Deployment = deployment) -> None:
                threading.Event().wait(spacing)
                deployment_delete(principal=owner, deployment=deployment)

            racers = [in_thread(lambda i=instance_id: provisioning.instance_provision(i), errors),
                      in_thread(delete, errors)]  # fmt: skip
            for racer in racers:
                racer.start()
            for racer in racers:
                racer.join(30)

    lanes = [in_thread(lambda n=n: lane(n), errors) for n in range(LANES)]
    for thread in lanes:
        thread.start()
    for thread in lanes:
        thread.join(120)
    assert errors == [], f"{len(errors)} of {PAIRS} pairs failed: {errors[:3]}"
    retried = [r.getMessage() for r in caplog.records if r.name == "gpucloud.core.db"]
    assert retried == []  # the lock order kept them apart, not retry_on_deadlock
    assert len(queued["provision"]) == PAIRS
    terminating = list(dict.fromkeys(queued["terminate"]))  # what the workers would run next, two at a time
    stoppers = [in_thread(lambda part=terminating[n::2]: [provisioning.instance_terminate(i) for i in part], errors)
                for n in range(2)]  # fmt: skip
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join(60)
    assert errors == []
    left = Deployment.objects.exclude(status=DeploymentStatus.STOPPED)
    assert list(left.values_list("pk", "status")) == []
    assert not Instance.objects.exclude(state__in=FINAL_STATES).exists()
    assert sim_cloud.running(cloud) == []
