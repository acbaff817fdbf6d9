"""Serverless endpoints (POST /deployments with kind: serverless): they scale to zero after their
idle timeout (15 minutes by default, reference/001) and the next request wakes them; `start_cold`
launches nothing, holds nothing and bills nothing until the first request. A stopped (deleted)
endpoint is never woken again. Bad options are refused with nothing created."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from billing.models import CreditHold
from catalog.models import Provider
from deployments import services
from deployments.models import Deployment, DeploymentStatus
from deployments.scaling import autoscaler
from fleet.models import Instance
from fleet.offers import offers_refresh_all
from tests.support.billing import fund
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000


def create(client: Client, persona: Persona, **extra: Any) -> Any:
    body = {"model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local", **extra}
    return client.post("/api/v1/deployments", data=json.dumps(body), content_type="application/json", **persona.auth)


@pytest.mark.usefixtures("tasks", "fleet")
def test_a_serverless_endpoint_runs_then_idles_to_zero_after_fifteen_minutes(client: Client, alice: Persona) -> None:
    cache.clear()
    fund(alice.org, 5 * USD)
    created = create(client, alice, kind="serverless")
    assert created.status_code == 201, created.content
    deployment_id = created.json()["id"]
    scaling = client.get(f"/api/v1/deployments/{deployment_id}/scaling", **alice.auth).json()
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["scale_to_zero"],
            scaling["idle_timeout_seconds"], scaling["replicas"]) == (0, 1, True, 900, 1)  # fmt: skip
    Deployment.objects.filter(pk=deployment_id).update(status=DeploymentStatus.ACTIVE,
                                                       started_at=timezone.now() - timedelta(minutes=14))  # fmt: skip
    started = Deployment.objects.get(pk=deployment_id).started_at
    assert started is not None
    assert autoscaler.autoscale_round(now=started.timestamp() + 14 * 60) == {}  # 14 minutes: still up
    assert autoscaler.autoscale_round(now=started.timestamp() + 15 * 60) == {deployment_id: 0}
    assert Deployment.objects.get(pk=deployment_id).status == DeploymentStatus.SCALED_TO_ZERO


@pytest.mark.usefixtures("fleet")
def test_start_cold_launches_and_holds_nothing_until_the_first_request(
    client: Client,
    alice: Persona,
    tasks: dict[str, list[str]],
) -> None:
    config = Provider.objects.get(slug="local").config
    Provider.objects.filter(slug="local").update(config={**config, "slots": 0})  # the machine is full
    offers_refresh_all()
    assert create(client, alice, kind="serverless").status_code == 409  # no capacity to start now
    created = create(client, alice, kind="serverless", start_cold=True, idle_timeout_seconds=300)
    assert created.status_code == 201, created.content  # no credit and no capacity needed to exist
    Provider.objects.filter(slug="local").update(config=config)
    offers_refresh_all()
    body = created.json()
    assert (body["status"], body["replicas"], body["instances"]) == ("scaled_to_zero", 0, [])
    deployment = Deployment.objects.get(pk=body["id"])
    assert deployment.is_cold and deployment.idle_timeout_seconds == 300
    assert not CreditHold.objects.exists() and tasks["provision"] == []
    fund(alice.org, 5 * USD)
    services.deployment_wake(deployment_id=deployment.pk)  # what the gateway does on the first request
    deployment.refresh_from_db()
    assert (deployment.status, deployment.desired_replicas) == ("provisioning", 1)
    assert Instance.objects.filter(deployment=deployment).count() == 1 and CreditHold.objects.count() == 1


@pytest.mark.usefixtures("fleet")
@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"kind": "pod"}, "kind"),
        ({"idle_timeout_seconds": 600}, "idle_timeout_seconds"),  # a model deployment does not idle
        ({"start_cold": True}, "start_cold"),
        ({"kind": "serverless", "idle_timeout_seconds": 30}, "idle_timeout_seconds"),
    ],
)
def test_options_that_do_not_fit_are_refused(client: Client, alice: Persona, extra: dict[str, Any], param: str) -> None:
    fund(alice.org, 5 * USD)
    refused = create(client, alice, **extra)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == param, refused.content
    assert not Deployment.objects.exists()


def test_a_stopped_serverless_endpoint_is_not_woken(alice: Persona, catalog: None) -> None:
    deployment = Deployment.objects.create(
        org=alice.org, name="gone", kind="serverless", status=DeploymentStatus.STOPPED,
        model_id="smollm2-135m-instruct", gpu_type_id="cpu", region_id="local", desired_replicas=0,
        hourly_price_micros=50_000, scale_to_zero=True, min_replicas=0,
    )  # fmt: skip
    assert not deployment.is_cold
    fund(alice.org, 5 * USD)
    assert services.deployment_wake(deployment_id=deployment.pk).status == DeploymentStatus.STOPPED


@pytest.mark.usefixtures("fleet")
def test_at_zero_balance_a_serverless_endpoint_goes_cold_and_wakes_after_a_top_up(
    client: Client,
    alice: Persona,
    tasks: dict[str, list[str]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    fund(alice.org, 5 * USD)
    deployment_id = create(client, alice, kind="serverless").json()["id"]
    (instance,) = Instance.objects.filter(deployment_id=deployment_id)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.deployments_stop_for_nonpayment(org=alice.org) == 1
    deployment = Deployment.objects.get(pk=deployment_id)
    assert (deployment.status, deployment.desired_replicas, deployment.is_cold) == ("scaled_to_zero", 0, True)
    assert tasks["terminate"] == [instance.pk]  # nothing keeps running (or billing)
    services.deployment_wake(deployment_id=deployment_id)  # the next request, credit permitting
    assert Deployment.objects.get(pk=deployment_id).status == DeploymentStatus.PROVISIONING
