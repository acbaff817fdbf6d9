"""A worker dies (an exception injected, or a step that never ran) at each provisioning step;
after the reconciler runs, exactly the instances the database calls running are running, and
each instance's billed seconds match its lifetime."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from billing.invariants import ledger_violations
from billing.metering import cost_micros
from billing.models import UsageMeter
from catalog.data import SMOLLM2_GGUF
from catalog.models import Provider
from deployments.models import Deployment
from fleet import provisioning, tasks
from fleet.drivers import driver
from fleet.models import FINAL_STATES, LIVE_STATES, Instance, InstanceState
from fleet.offers import offers_refresh_all
from fleet.providers.base import InstanceSpec, ProviderError
from fleet.providers.local.driver import LocalDriver
from fleet.reconciler import fleet_reconcile
from tests.support.billing import billing_mismatches, fund
from tests.support.fleet import engines_killed_at_random_ages
from tests.support.personas import Persona

USD = 1_000_000
SMOL = {"name": "k", "model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local", "replicas": 1}


class WorkerKilled(Exception):
    """Stands for SIGKILL at this point: nothing after it runs."""


def create_without_running_tasks(client: Client, persona: Persona, capture: Any) -> Deployment:
    with capture(execute=False):  # the worker never picks the task up
        response = client.post("/api/v1/deployments", data=json.dumps(SMOL), content_type="application/json",
                               **persona.auth)  # fmt: skip
    assert response.status_code == 201, response.content
    return Deployment.objects.get(pk=response.json()["id"])


def deploy_running(client: Client, persona: Persona, capture: Any) -> str:
    with capture(execute=True):
        response = client.post("/api/v1/deployments", data=json.dumps(SMOL), content_type="application/json",
                               **persona.auth)  # fmt: skip
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def reconcile(capture: Any, *, later: float = 30) -> None:
    with capture(execute=True):
        fleet_reconcile(now=timezone.now() + timedelta(seconds=later))


def assert_consistent(tag: str) -> None:
    running = {i.instance_id for i in driver("local").list_instances(tag)}
    live = set(Instance.objects.filter(state__in=LIVE_STATES).values_list("pk", flat=True))
    assert running == live, f"provider runs {running}, database says {live}"
    for instance in Instance.objects.filter(state=InstanceState.TERMINATED).exclude(launched_at=None):
        meter = UsageMeter.objects.get(meter_key=instance.pk)
        assert instance.terminated_at is not None and instance.launched_at is not None
        lifetime = int((instance.terminated_at - instance.launched_at).total_seconds())
        assert meter.billed_seconds == max(60, lifetime)
        assert meter.billed_micros == cost_micros(meter.hourly_price_micros, lifetime)


def kill(exc: type[Exception] = WorkerKilled) -> Any:
    def die(*args: object, **kwargs: object) -> None:
        raise exc("killed")

    return die


def only(deployment: Deployment) -> Instance:
    return Instance.objects.get(deployment=deployment)


def test_killed_before_launch(client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    deployment = create_without_running_tasks(client, alice, django_capture_on_commit_callbacks)
    monkeypatch.setattr(LocalDriver, "launch", kill())
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(only(deployment).pk)
    monkeypatch.undo()
    assert driver("local").list_instances(fleet) == []
    reconcile(django_capture_on_commit_callbacks)
    assert only(deployment).state == InstanceState.READY
    assert_consistent(fleet)


def test_killed_after_launch_before_commit(client: Client, alice: Persona, fleet: str,
                                           django_capture_on_commit_callbacks: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    deployment = create_without_running_tasks(client, alice, django_capture_on_commit_callbacks)
    monkeypatch.setattr(provisioning, "_record_launch", kill())
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(only(deployment).pk)
    monkeypatch.undo()
    assert len(driver("local").list_instances(fleet)) == 1  # the engine runs; the database does not know yet
    assert only(deployment).state == InstanceState.PROVISIONING
    reconcile(django_capture_on_commit_callbacks)
    instance = only(deployment)
    assert instance.state == InstanceState.READY and len(driver("local").list_instances(fleet)) == 1  # adopted
    started = driver("local").list_instances(fleet)[0].started_at
    assert started is not None and instance.launched_at is not None
    assert abs((instance.launched_at - started).total_seconds()) < 1  # billed from the launch, not the adoption
    assert_consistent(fleet)


def test_killed_after_commit(client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any,
                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip

    fund(alice.org, 10 * USD)
    deployment = create_without_running_tasks(client, alice, django_capture_on_commit_callbacks)
    monkeypatch.setattr(tasks.instance_wait_ready_task, "delay", kill())
    with pytest.raises(WorkerKilled), django_capture_on_commit_callbacks(execute=True):
        provisioning.instance_provision(only(deployment).pk)
    monkeypatch.undo()
    assert only(deployment).state == InstanceState.LOADING
    reconcile(django_capture_on_commit_callbacks)
    assert only(deployment).state == InstanceState.READY
    assert_consistent(fleet)


def test_killed_during_teardown(client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any,
                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    deployment_id = deploy_running(client, alice, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):  # the terminate task is lost with the worker
        client.delete(f"/api/v1/deployments/{deployment_id}", **alice.auth)
    assert only(Deployment.objects.get(pk=deployment_id)).state == InstanceState.TERMINATING
    assert len(driver("local").list_instances(fleet)) == 1  # still running, still billing
    reconcile(django_capture_on_commit_callbacks, later=0)
    assert only(Deployment.objects.get(pk=deployment_id)).state == InstanceState.TERMINATED
    assert Deployment.objects.get(pk=deployment_id).status == "stopped"
    assert_consistent(fleet)


def test_terminate_fails_once(client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    deployment_id = deploy_running(client, alice, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        client.delete(f"/api/v1/deployments/{deployment_id}", **alice.auth)
    instance = only(Deployment.objects.get(pk=deployment_id))
    monkeypatch.setattr(LocalDriver, "terminate", kill(lambda message: ProviderError(message)))  # type: ignore[arg-type]
    with pytest.raises(ProviderError):
        provisioning.instance_terminate(instance.pk)
    monkeypatch.undo()
    assert (
        only(Deployment.objects.get(pk=deployment_id)).state == InstanceState.TERMINATING
    )  # not confirmed: not marked
    reconcile(django_capture_on_commit_callbacks, later=0)
    assert only(Deployment.objects.get(pk=deployment_id)).state == InstanceState.TERMINATED
    assert_consistent(fleet)


def test_instance_already_gone_is_recorded_lost_and_replaced(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    deployment_id = deploy_running(client, alice, django_capture_on_commit_callbacks)
    first = only(Deployment.objects.get(pk=deployment_id))
    engine = next(p for p in driver("local").list_instances(fleet) if p.instance_id == first.pk)
    pid = int(json.loads((driver("local").instances_dir / first.pk / "instance.json").read_text())["pid"])  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGKILL)  # the machine dies under us
    deadline = time.monotonic() + 10
    while driver("local").list_instances(fleet) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.instance_id not in {i.instance_id for i in driver("local").list_instances(fleet)}
    reconcile(django_capture_on_commit_callbacks, later=0)
    first.refresh_from_db()
    assert first.state == InstanceState.TERMINATED
    assert first.events.filter(to_status="terminated", reason__startswith="Lost").exists()
    replacement = Instance.objects.filter(deployment_id=deployment_id).exclude(pk=first.pk).get()
    assert replacement.state == InstanceState.READY
    assert Deployment.objects.get(pk=deployment_id).status == "active"
    assert_consistent(fleet)


def test_orphans_are_reaped(alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any) -> None:
    local = driver("local")
    spec = InstanceSpec(instance_id="inst_orphan", tag=fleet, engine="llama.cpp", model={"gguf": SMOLLM2_GGUF},
                        served_model_name="x", api_key="k", gpu_type="cpu")  # fmt: skip
    local.launch(spec, local.offers()[0])  # e.g. launched by a worker whose database transaction rolled back
    reconcile(django_capture_on_commit_callbacks)
    assert local.list_instances(fleet) == []
    assert_consistent(fleet)


def test_fleet_command_lists_and_reaps(alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any) -> None:

    local = driver("local")
    spec = InstanceSpec(instance_id="inst_stray", tag=fleet, engine="llama.cpp", model={"gguf": SMOLLM2_GGUF},
                        served_model_name="x", api_key="k", gpu_type="cpu")  # fmt: skip
    local.launch(spec, local.offers()[0])
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("fleet", "--reap", stdout=out)
    assert "1 reaped" in out.getvalue() and "No instances." in out.getvalue()
    assert local.list_instances(fleet) == []


KILL_ROUNDS = 2
ENGINES_AT_ONCE = 4
END_TOLERANCE_SECONDS = 2.0  # from the kill to the recorded end, on a loaded machine


@pytest.mark.slow
def test_engines_killed_at_random_ages_end_when_they_died_and_bill_exactly_their_lifetime(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    """Issue 15 §2: a lost engine's end was its log's last write (an engine killed after 150 s was
    recorded as living 0.7 s) and a usage tick after its death was never taken back (billed 153 s).
    Engines are SIGKILLed at random ages: each age is a real life of a few seconds after a pretended
    earlier start (its launch moved back by up to 10 minutes, its meter with it), with beat's usage
    ticks before the kills and after them, before the reconciler sees the engines gone. Every
    session, lost or stopped, must end when its process did and be charged max(60, lifetime)."""
    Provider.objects.filter(slug="local").update(
        config={**Provider.objects.get(slug="local").config, "slots": ENGINES_AT_ONCE}
    )
    offers_refresh_all()
    fund(alice.org, 100 * USD)
    rng = random.Random(15)  # noqa: S311  (repeatable ages, not a secret)
    killed: dict[str, datetime] = {}
    for _ in range(KILL_ROUNDS):
        deployments = [
            deploy_running(client, alice, django_capture_on_commit_callbacks) for _ in range(ENGINES_AT_ONCE)
        ]
        victims = [only(Deployment.objects.get(pk=pk)).pk for pk in deployments]
        killed |= engines_killed_at_random_ages(victims, driver("local").instances_dir, rng)  # type: ignore[attr-defined]
        reconcile(django_capture_on_commit_callbacks, later=0)  # records them lost and replaces them
        with django_capture_on_commit_callbacks(execute=True):
            for pk in deployments:
                client.delete(f"/api/v1/deployments/{pk}", **alice.auth)
    wrong_ends = []
    for instance_id, at in killed.items():
        end = Instance.objects.get(pk=instance_id).terminated_at
        assert end is not None
        if not timedelta(0) <= end - at <= timedelta(seconds=END_TOLERANCE_SECONDS):
            wrong_ends.append(f"{instance_id} killed at {at:%H:%M:%S.%f}, recorded ending at {end:%H:%M:%S.%f}")
    assert wrong_ends == []
    assert billing_mismatches() == []
    assert driver("local").list_instances(fleet) == []  # no leak: the replacements were stopped with their deployments
    assert not Instance.objects.exclude(state__in=FINAL_STATES).exists()
    assert Instance.objects.filter(state=InstanceState.TERMINATED).count() == 2 * len(killed)
    assert ledger_violations() == []
