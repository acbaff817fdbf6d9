"""PATCH /api/v1/deployments/{id}/preset: the deployment takes the preset's GPU class, engine
configuration and price, and its replicas are replaced one at a time (a new one ready before an
old one drains and stops), on a simulated GPU cloud whose machines are engine simulators. Refusals
change nothing; a replica that cannot start stops the rollout with the old replicas serving; the
autoscaler and the reconciler do not undo a rollout (the reconciler finishes one on its own)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Membership
from accounts.roles import Role
from billing.metering import cost_micros
from billing.models import CreditHold, HoldStatus, UsageMeter
from billing.selectors import balance_of
from catalog.models import Provider
from catalog.services import catalog_load
from deployments import preset_rollout as rollout
from deployments import tasks as deployment_tasks
from deployments import traffic
from deployments.models import Deployment, DeploymentEvent
from deployments.scaling import autoscaler
from deployments.services import deployment_wake
from fleet import provisioning, reconciler
from fleet import tasks as fleet_tasks
from fleet.models import Instance
from gateway import routing
from tests.support import sim_cloud
from tests.support.billing import fund, ledger_snapshot
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000
MODEL = "llama-3.1-8b-instruct"
MI300X, H100 = 2_590_000, 4_410_000
SETTLE = timedelta(seconds=rollout.DRAIN_SETTLE_SECONDS)


@pytest.fixture
def cloud(db: None, settings: Any) -> Iterator[str]:
    """The catalog and the sim cloud (MI300X and H100 in atl1, two of each), with a fleet tag of its own."""
    catalog_load()
    tag = f"gpucloud-test-{uuid.uuid4().hex[:8]}"
    settings.GPUCLOUD_FLEET_TAG = tag
    settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 0
    Provider.objects.filter(slug="local").update(enabled=False)
    sim_cloud.provider_create(tag, gpus={"mi300x": {"price": MI300X, "capacity": 2},
                                         "h100": {"price": H100, "capacity": 2}})  # fmt: skip
    yield tag
    sim_cloud.stop_all(tag)


@pytest.fixture
def nudges(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The rollout task's runs are recorded, not run: the test takes each step itself, on its clock."""
    sent: list[str] = []
    monkeypatch.setattr(deployment_tasks.deployment_rollout_task, "delay", sent.append)
    return sent


def deploy(client: Client, persona: Persona, capture: Any, *, replicas: int = 2) -> Deployment:
    body = {"name": "chat", "model_id": MODEL, "gpu_type": "mi300x", "region": "atl1", "replicas": replicas,
            "preset": "balanced"}  # fmt: skip
    with capture(execute=True):
        response = client.post("/api/v1/deployments", data=json.dumps(body), content_type="application/json",
                               **persona.auth)  # fmt: skip
    assert response.status_code == 201, response.content
    deployment = Deployment.objects.get(pk=response.json()["id"])
    assert deployment.status == "active"
    return deployment


def patch(client: Client, persona: Persona, deployment: Deployment, body: dict[str, Any]) -> Any:
    return client.patch(f"/api/v1/deployments/{deployment.pk}/preset", data=json.dumps(body),
                        content_type="application/json", **persona.auth)  # fmt: skip


def states(deployment: Deployment) -> list[tuple[str, str, str | None]]:
    """(id, state, GPU) of every instance, oldest first."""
    return list(deployment.instances.order_by("created_at", "pk").values_list("pk", "state", "gpu_type_id"))


def routed(deployment: Deployment) -> set[str]:
    """The replicas the gateway sends requests to."""
    route = routing._resolve(deployment.org_id, deployment.pk)
    assert isinstance(route, routing.Route)  # an id names one deployment
    return {t.instance_id for t in route.targets}


def notes(deployment: Deployment) -> list[str]:
    return list(DeploymentEvent.objects.filter(deployment=deployment, instance=None, reason__startswith="Roll")
                .order_by("at", "pk").values_list("reason", flat=True))  # fmt: skip


def test_two_replicas_roll_to_a_new_preset_one_at_a_time(
    client: Client, alice: Persona, cloud: str, nudges: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 50 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    old1, old2 = (pk for pk, _, _ in states(deployment))
    assert sim_cloud.LAUNCHED[old1].engine_args["batching"] == "auto"

    with django_capture_on_commit_callbacks(execute=True):
        response = patch(client, alice, deployment, {"preset": "speed"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["preset"], body["gpu_type"], body["status"]) == ("speed", "h100", "active")
    assert body["rollout"] | {"started_at": None, "message": None} == {
        "state": "rolling", "preset": "speed", "from_preset": "balanced", "replaced": 0, "total": 2,
        "started_at": None, "message": None,
    }  # fmt: skip
    # One new replica, launched with the preset's GPU and engine configuration, ready; the old ones serve on.
    new1 = states(deployment)[2][0]
    assert states(deployment) == [(old1, "ready", "mi300x"), (old2, "ready", "mi300x"), (new1, "ready", "h100")]
    spec = sim_cloud.LAUNCHED[new1]
    assert spec.gpu_type == "h100" and (spec.engine_args["dtype"], spec.engine_args["max_num_seqs"]) == ("float16", 256)
    assert nudges == [deployment.pk]  # the new replica's readiness asks for the next step
    assert routed(deployment) == {old1, old2, new1}
    detail = client.get(f"/api/v1/deployments/{deployment.pk}", **alice.auth).json()
    assert detail["hourly_cost_usd"] == (2 * MI300X + H100) / USD  # each replica at its own offer's price
    assert [(i["preset"], i["hourly_price_usd"]) for i in detail["instances"]] == [
        ("balanced", 2.59),
        ("balanced", 2.59),
        ("speed", 4.41),
    ]

    # It is ready: the oldest old one leaves routing and drains, still running, until the drain settles.
    t0 = timezone.now()
    assert rollout.rollout_advance(deployment_id=deployment.pk, now=t0) == "draining"
    assert states(deployment)[0][1] == "draining" and routed(deployment) == {old2, new1}
    assert rollout.rollout_advance(deployment_id=deployment.pk, now=t0 + SETTLE / 2) == "draining"
    assert len(sim_cloud.running(cloud)) == 3
    # Drained: it stops, and only then is the second new replica launched.
    with django_capture_on_commit_callbacks(execute=True):
        assert rollout.rollout_advance(deployment_id=deployment.pk, now=t0 + SETTLE) == "launched"
    new2 = states(deployment)[3][0]
    assert states(deployment) == [(old1, "terminated", "mi300x"), (old2, "ready", "mi300x"),
                                  (new1, "ready", "h100"), (new2, "ready", "h100")]  # fmt: skip
    assert nudges == [deployment.pk] * 2

    t1 = timezone.now()
    assert rollout.rollout_advance(deployment_id=deployment.pk, now=t1) == "draining"
    assert routed(deployment) == {new1, new2}
    with django_capture_on_commit_callbacks(execute=True):
        assert rollout.rollout_advance(deployment_id=deployment.pk, now=t1 + SETTLE) == "done"
    assert rollout.rollout_advance(deployment_id=deployment.pk) == "idle"  # running it again does nothing

    assert [state for _, state, _ in states(deployment)] == ["terminated", "terminated", "ready", "ready"]
    assert sim_cloud.peak(cloud) == 3  # never more than one machine beyond the two replicas
    assert {m.spec.instance_id for m in sim_cloud.running(cloud)} == {new1, new2}
    detail = client.get(f"/api/v1/deployments/{deployment.pk}", **alice.auth).json()
    assert (detail["status"], detail["rollout"]["state"], detail["rollout"]["replaced"]) == ("active", "done", 2)
    assert detail["hourly_cost_usd"] == 2 * H100 / USD
    assert notes(deployment) == [
        "Rolling to preset Speed (NVIDIA H100, $4.41/h per replica): replacing 2 replica(s) one at a time.",
        f"Rolling to preset Speed: launching replica 1 of 2 ({new1}) on NVIDIA H100.",
        f"Rolling to preset Speed: replica 1 of 2 ready; draining {old1}.",
        f"Rolling to preset Speed: {old1} stopping (1 of 2 replaced).",
        f"Rolling to preset Speed: launching replica 2 of 2 ({new2}) on NVIDIA H100.",
        f"Rolling to preset Speed: replica 2 of 2 ready; draining {old2}.",
        f"Rolling to preset Speed: {old2} stopping (2 of 2 replaced).",
        "Rolled to preset Speed: 2 of 2 replaced.",
    ]
    # Billing follows each replica at its own price: the old ones to their confirmed end.
    for pk, price in ((old1, MI300X), (old2, MI300X), (new1, H100), (new2, H100)):
        instance = Instance.objects.get(pk=pk)
        meter = UsageMeter.objects.get(meter_key=pk)
        assert meter.hourly_price_micros == instance.hourly_price_micros == price
        assert meter.ended_at == instance.terminated_at
        assert meter.billed_micros == cost_micros(price, meter.billed_seconds)
    assert UsageMeter.objects.get(meter_key=old1).ended_at is not None


@contextlib.contextmanager
def one_replica_draining(client: Client, alice: Persona, capture: Any) -> Iterator[tuple[Deployment, datetime]]:
    """A one-replica deployment rolling to `latency`: the new replica ready, the old one draining
    since the time yielded. The gateway counts reported meanwhile are cleared afterwards."""
    fund(alice.org, 50 * USD)
    deployment = deploy(client, alice, capture, replicas=1)
    with capture(execute=True):
        assert patch(client, alice, deployment, {"preset": "latency"}).status_code == 200
    t0 = timezone.now()
    assert rollout.rollout_advance(deployment_id=deployment.pk, now=t0) == "draining"
    try:
        yield deployment, t0
    finally:
        asyncio.run(traffic.store().add({}, {}))
    assert [state for _, state, _ in states(deployment)] == ["terminated", "ready"]


@pytest.mark.usefixtures("cloud", "nudges")
def test_a_drain_waits_for_requests_in_flight_up_to_its_timeout(
    client: Client, alice: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    with one_replica_draining(client, alice, django_capture_on_commit_callbacks) as (deployment, t0):
        (old, _, _), _new = states(deployment)
        asyncio.run(traffic.store().add({}, {deployment.pk: 1, old: 1}))  # a gateway: one request on the old one
        assert rollout.rollout_advance(deployment_id=deployment.pk, now=t0 + SETTLE) == "draining"
        timeout = t0 + timedelta(seconds=rollout.DRAIN_TIMEOUT_SECONDS)
        with django_capture_on_commit_callbacks(execute=True):
            assert rollout.rollout_advance(deployment_id=deployment.pk, now=timeout) == "done"


@pytest.mark.usefixtures("cloud", "nudges")
def test_a_drain_ends_once_its_own_replica_is_idle_whatever_the_others_serve(
    client: Client, alice: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    with one_replica_draining(client, alice, django_capture_on_commit_callbacks) as (deployment, t0):
        _old, (new, _, _) = states(deployment)
        asyncio.run(traffic.store().add({}, {deployment.pk: 7, new: 7}))  # busy, but only on the new replica
        with django_capture_on_commit_callbacks(execute=True):
            assert rollout.rollout_advance(deployment_id=deployment.pk, now=t0 + SETTLE) == "done"


def test_a_replica_that_cannot_launch_stops_the_rollout_and_the_old_ones_serve_on(
    client: Client, alice: Persona, cloud: str, nudges: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 50 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    old1, old2 = (pk for pk, _, _ in states(deployment))
    sim_cloud.provider_set(fail={"h100": "Image pull failed: registry said 404."})
    with django_capture_on_commit_callbacks(execute=True):
        assert patch(client, alice, deployment, {"preset": "speed"}).status_code == 200
    new1 = states(deployment)[2][0]
    assert nudges == [deployment.pk]  # the failed launch asks for the next step
    with django_capture_on_commit_callbacks(execute=True):
        assert rollout.rollout_advance(deployment_id=deployment.pk) == "failed"
    says = (
        f"Rolling to preset Speed stopped: the new replica {new1} did not start: Image pull failed: registry "
        "said 404. 2 replica(s) on the previous configuration keep serving; apply the preset again to retry."
    )
    detail = client.get(f"/api/v1/deployments/{deployment.pk}", **alice.auth).json()
    assert (detail["status"], detail["rollout"]["state"], detail["rollout"]["message"]) == ("active", "failed", says)
    assert states(deployment) == [(old1, "ready", "mi300x"), (old2, "ready", "mi300x"), (new1, "failed", "h100")]
    assert routed(deployment) == {old1, old2}
    hold = CreditHold.objects.get(idempotency_key=f"instance:{new1}:first-minute")
    assert hold.status == HoldStatus.VOIDED and not UsageMeter.objects.filter(meter_key=new1).exists()
    assert notes(deployment)[-1] == says
    # The reconciler and the rollout task leave a failed rollout as it is.
    assert reconciler.fleet_reconcile().replaced == [] and len(states(deployment)) == 3
    assert rollout.rollout_advance(deployment_id=deployment.pk) == "idle"


def test_no_capacity_midway_stops_the_rollout_and_applying_it_again_resumes(
    client: Client, alice: Persona, cloud: str, nudges: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 50 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    old1, old2 = (pk for pk, _, _ in states(deployment))
    sim_cloud.provider_set(gpus={"mi300x": {"price": MI300X, "capacity": 2}, "h100": {"price": H100, "capacity": 1}})
    with django_capture_on_commit_callbacks(execute=True):
        assert patch(client, alice, deployment, {"preset": "speed"}).status_code == 200
    new1 = states(deployment)[2][0]
    t0 = timezone.now()
    assert rollout.rollout_advance(deployment_id=deployment.pk, now=t0) == "draining"
    with django_capture_on_commit_callbacks(execute=True):  # old1 stops; the second H100 is not there
        assert rollout.rollout_advance(deployment_id=deployment.pk, now=t0 + SETTLE) == "launched"
    new2 = states(deployment)[3][0]
    assert Instance.objects.get(pk=new2).state == "waiting_for_capacity"
    with django_capture_on_commit_callbacks(execute=True):
        assert rollout.rollout_advance(deployment_id=deployment.pk) == "failed"
    deployment.refresh_from_db()
    assert deployment.rollout_message.startswith(
        "Rolling to preset Speed stopped: no NVIDIA H100 capacity in atl1 for a new replica. 1 replica(s)"
    )
    assert states(deployment) == [(old1, "terminated", "mi300x"), (old2, "ready", "mi300x"),
                                  (new1, "ready", "h100"), (new2, "terminated", "h100")]  # fmt: skip
    assert deployment.status == "active" and routed(deployment) == {old2, new1}
    assert CreditHold.objects.get(idempotency_key=f"instance:{new2}:first-minute").status == HoldStatus.VOIDED

    # Capacity is back: applying the same preset again resumes with the replica left to replace.
    sim_cloud.provider_set(gpus={"mi300x": {"price": MI300X, "capacity": 2}, "h100": {"price": H100, "capacity": 2}})
    with django_capture_on_commit_callbacks(execute=True):
        again = patch(client, alice, deployment, {"preset": "speed"})
    assert again.status_code == 200
    assert again.json()["rollout"] | {"started_at": None, "message": None} == {
        "state": "rolling", "preset": "speed", "from_preset": "balanced", "replaced": 0, "total": 1,
        "started_at": None, "message": None,
    }  # fmt: skip
    t1 = timezone.now()
    assert rollout.rollout_advance(deployment_id=deployment.pk, now=t1) == "draining"
    with django_capture_on_commit_callbacks(execute=True):
        assert rollout.rollout_advance(deployment_id=deployment.pk, now=t1 + SETTLE) == "done"
    assert [(state, gpu) for _, state, gpu in states(deployment) if state == "ready"] == [("ready", "h100")] * 2


def test_the_autoscaler_and_the_reconciler_do_not_undo_a_rollout(
    client: Client, alice: Persona, cloud: str, nudges: list[str], django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fund(alice.org, 50 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    Deployment.objects.filter(pk=deployment.pk).update(min_replicas=1, max_replicas=4)
    with django_capture_on_commit_callbacks(execute=True):
        assert patch(client, alice, deployment, {"preset": "speed"}).status_code == 200
    # Mid-roll (three replicas for two, one of them the surge), under a load that wants more.
    monkeypatch.setattr(traffic.LocalStore, "in_flight", lambda self: {deployment.pk: 40})
    monkeypatch.setattr(traffic.RedisStore, "in_flight", lambda self: {deployment.pk: 40})
    for _ in range(3):
        assert autoscaler.autoscale_round() == {}
    with django_capture_on_commit_callbacks(execute=True):
        report = reconciler.fleet_reconcile()
    assert (report.replaced, report.reaped, report.rolled) == ([], [], {deployment.pk: "draining"})
    assert len(states(deployment)) == 3 and Deployment.objects.get(pk=deployment.pk).desired_replicas == 2

    # With its task gone (nudges are only recorded here), the reconciler's rounds finish the rollout.
    monkeypatch.setattr(rollout, "DRAIN_SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(traffic.RedisStore, "in_flight", lambda self: {})
    monkeypatch.setattr(traffic.LocalStore, "in_flight", lambda self: {})
    steps = []
    for _ in range(4):
        with django_capture_on_commit_callbacks(execute=True):
            steps.append(reconciler.fleet_reconcile().rolled.get(deployment.pk))
    assert steps == ["launched", "draining", "done", None]
    assert [(state, gpu) for _, state, gpu in states(deployment) if state == "ready"] == [("ready", "h100")] * 2
    assert sim_cloud.peak(cloud) == 3
    # Once it is over the autoscaler acts again (the same load adds a replica after three checks).
    monkeypatch.setattr(traffic.RedisStore, "in_flight", lambda self: {deployment.pk: 40})
    monkeypatch.setattr(traffic.LocalStore, "in_flight", lambda self: {deployment.pk: 40})
    with django_capture_on_commit_callbacks(execute=True):
        rounds = [autoscaler.autoscale_round() for _ in range(3)]
    assert rounds == [{}, {}, {deployment.pk: 3}]


def test_the_same_preset_is_a_no_op(
    client: Client, alice: Persona, cloud: str, nudges: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 50 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    before = (states(deployment), DeploymentEvent.objects.count(), ledger_snapshot())
    response = patch(client, alice, deployment, {"preset": "balanced"})
    assert response.status_code == 200
    assert (response.json()["preset"], response.json()["rollout"]) == ("balanced", None)
    assert (states(deployment), DeploymentEvent.objects.count(), ledger_snapshot()) == before
    assert nudges == []


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 400, "preset is required: one of balanced, cost, latency, speed."),
        ({"preset": ""}, 400, "preset is required: one of balanced, cost, latency, speed."),
        ({"preset": "turbo"}, 400, "Unknown preset 'turbo'; use one of balanced, cost, latency, speed."),
        ({"preset": 7}, 422, "preset: Input should be a valid string"),
    ],
)
def test_bad_presets_are_refused_and_nothing_changes(
    client: Client, alice: Persona, cloud: str, nudges: list[str], django_capture_on_commit_callbacks: Any,
    body: dict[str, Any], status: int, says: str,
) -> None:  # fmt: skip
    fund(alice.org, 50 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    before = (states(deployment), DeploymentEvent.objects.count(), ledger_snapshot())
    response = patch(client, alice, deployment, body)
    assert response.status_code == status
    assert (response.json()["error"]["param"], response.json()["error"]["message"]) == ("preset", says)
    assert (states(deployment), DeploymentEvent.objects.count(), ledger_snapshot()) == before
    assert Deployment.objects.get(pk=deployment.pk).preset_id == "balanced"


def serving(persona: Persona, *, model: str = MODEL, status: str = "active") -> Deployment:
    """A deployment on balanced with one ready replica, made directly (nothing launched)."""
    deployment = Deployment.objects.create(
        org=persona.org, name="chat", status=status, model_id=model, gpu_type_id="mi300x", region_id="atl1",
        preset_id="balanced", hourly_price_micros=MI300X, started_at=timezone.now(),
    )  # fmt: skip
    Instance.objects.create(
        deployment=deployment, state="ready", provider="sim", provider_instance_id="sim-x", tag="t", api_key="k",
        endpoint_url="http://127.0.0.1:1", hourly_price_micros=MI300X, launched_at=timezone.now(),
    )  # fmt: skip
    return deployment


def refused(client: Client, persona: Persona, deployment: Deployment, preset: str = "speed") -> dict[str, Any]:
    """The refusal's status and error, with a check that it changed nothing and launched nothing."""
    before = (states(deployment), DeploymentEvent.objects.count(), ledger_snapshot(), balance_of(persona.org))
    response = patch(client, persona, deployment, {"preset": preset})
    fresh = Deployment.objects.get(pk=deployment.pk)
    assert (fresh.preset_id, fresh.gpu_type_id, fresh.hourly_price_micros) == (
        deployment.preset_id, deployment.gpu_type_id, deployment.hourly_price_micros,
    )  # fmt: skip
    assert (states(deployment), DeploymentEvent.objects.count(), ledger_snapshot(),
            balance_of(persona.org)) == before  # fmt: skip
    assert sim_cloud.running(Provider.objects.get(slug="sim").config["tag"]) == []
    return {"status": response.status_code, **response.json()["error"]}


def test_a_preset_the_model_or_the_region_cannot_take_is_refused(client: Client, alice: Persona, cloud: str) -> None:
    fund(alice.org, 50 * USD)
    big = serving(alice, model="llama-3.3-70b-instruct")  # 160 GB: an H100 has 80
    assert refused(client, alice, big) == {
        "status": 400, "type": "invalid_request_error", "param": "preset",
        "message": "Llama 3.3 70B Instruct needs 160 GB of VRAM; the Speed preset runs on NVIDIA H100 with 80 GB.",
    }  # fmt: skip
    deployment = serving(alice)
    sim_cloud.provider_set(gpus={"mi300x": {"price": MI300X, "capacity": 2}, "h100": {"price": H100, "capacity": 0}})
    assert refused(client, alice, deployment) == {
        "status": 409, "type": "no_capacity",
        "message": "No NVIDIA H100 capacity in atl1 for the Speed preset right now; nothing changed. Try again later.",
    }  # fmt: skip
    sim_cloud.provider_set(gpus={"mi300x": {"price": MI300X, "capacity": 2}})
    assert refused(client, alice, deployment) == {
        "status": 400, "type": "invalid_request_error", "param": "preset",
        "message": "The Speed preset runs on NVIDIA H100, which no provider offers in atl1.",
    }  # fmt: skip


def test_viewers_other_orgs_idle_deployments_and_empty_balances_are_refused(
    client: Client, alice: Persona, bob: Persona, charlie: Persona, cloud: str
) -> None:
    deployment = serving(alice)
    assert refused(client, alice, deployment)["status"] == 402  # no credit for the new replica's first minute
    fund(alice.org, 50 * USD)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    assert refused(client, bob, deployment)["status"] == 403
    assert refused(client, charlie, deployment) == {"status": 404, "type": "not_found_error",
                                                    "message": f"No deployment {deployment.pk!r}.",
                                                    "param": "deployment_id"}  # fmt: skip
    for status, says in (
        ("provisioning", "The deployment is provisioning; apply a preset once it is running."),
        ("stopped", "The deployment is stopped; deploy it again to change its preset."),
        ("failed", "The deployment is failed; deploy it again to change its preset."),
    ):
        Deployment.objects.filter(pk=deployment.pk).update(status=status)
        assert refused(client, alice, deployment) == {"status": 409, "type": "conflict_error", "message": says}


def test_a_change_during_a_rollout_is_409(
    client: Client, alice: Persona, cloud: str, nudges: list[str], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 50 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        assert patch(client, alice, deployment, {"preset": "speed"}).status_code == 200
    before = (states(deployment), DeploymentEvent.objects.count())
    for preset in ("latency", "speed"):
        response = patch(client, alice, deployment, {"preset": preset})
        assert response.status_code == 409
        assert response.json()["error"]["message"] == (
            "A rollout to preset speed is in progress (0 of 2 replicas replaced); try again when it has finished."
        )
    assert (states(deployment), DeploymentEvent.objects.count()) == before


def test_a_deployment_scaled_to_zero_takes_the_preset_for_its_next_wake(
    client: Client, alice: Persona, cloud: str, django_capture_on_commit_callbacks: Any
) -> None:

    fund(alice.org, 50 * USD)
    deployment = serving(alice, status="scaled_to_zero")
    Instance.objects.filter(deployment=deployment).update(state="terminated", terminated_at=timezone.now())
    response = patch(client, alice, deployment, {"preset": "speed"})
    assert response.status_code == 200
    assert (response.json()["gpu_type"], response.json()["rollout"]["state"]) == ("h100", "done")
    assert Deployment.objects.get(pk=deployment.pk).hourly_price_micros == H100
    with django_capture_on_commit_callbacks(execute=True):
        deployment_wake(deployment_id=deployment.pk)
    woken = deployment.instances.exclude(state="terminated").get()
    assert (woken.state, woken.gpu_type_id, woken.preset_id, woken.hourly_price_micros) == ("ready", "h100", "speed",
                                                                                            H100)  # fmt: skip
    assert sim_cloud.LAUNCHED[woken.pk].engine_args["max_num_seqs"] == 256


def test_nothing_moves_while_the_new_replica_loads(
    client: Client, alice: Persona, cloud: str, nudges: list[str], django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip

    fund(alice.org, 50 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    old1, old2 = (pk for pk, _, _ in states(deployment))
    waits: list[str] = []
    monkeypatch.setattr(fleet_tasks.instance_wait_ready_task, "delay", lambda pk, *_: waits.append(pk))
    with django_capture_on_commit_callbacks(execute=True):
        assert patch(client, alice, deployment, {"preset": "speed"}).status_code == 200
    new1 = states(deployment)[2][0]
    loading = [(old1, "ready", "mi300x"), (old2, "ready", "mi300x"), (new1, "loading", "h100")]
    assert states(deployment) == loading and waits == [new1]  # its engine is loading
    for _ in range(2):  # the rollout task and the reconciler, again and again: no second launch, no drain
        with django_capture_on_commit_callbacks(execute=True):
            assert rollout.rollout_advance(deployment_id=deployment.pk) == "waiting"
            assert reconciler.fleet_reconcile().rolled == {deployment.pk: "waiting"}
    assert states(deployment) == loading and routed(deployment) == {old1, old2}
    assert provisioning.instance_check_ready(new1) is True
    assert rollout.rollout_advance(deployment_id=deployment.pk) == "draining"
    assert states(deployment)[0][1] == "draining"
