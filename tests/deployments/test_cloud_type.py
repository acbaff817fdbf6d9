"""Issue 16: the owner chooses the tier a deployment's replicas run on (secure: the provider's own
data-center machines; community: third parties' machines the provider vetted; any: the cheapest of
either), every answer says which, and no replica is ever launched on a tier nobody chose, not even
a replacement when the chosen tier runs out."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from deployments.models import Deployment
from fleet.models import FINAL_STATES, Instance, InstanceState
from fleet.reconciler import fleet_reconcile
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)
USD = 1_000_000
H100 = {"name": "tiers", "model_id": "llama-3.1-8b-instruct", "gpu_type": "h100", "region": "atl1", "replicas": 1}
BOTH_TIERS: dict[str, Any] = {"gpus": {"h100": {"price": 2_000_000, "capacity": 4}}, "community": {"h100": 1_200_000}}


def create(client: Client, persona: Persona, capture: Any, **body: Any) -> Any:
    fund(persona.org, 20 * USD)
    with capture(execute=True):
        return client.post("/api/v1/deployments", data=json.dumps({**H100, **body}), content_type="application/json",
                           **persona.auth)  # fmt: skip


def live_instance(deployment_id: str) -> Instance:
    return Instance.objects.exclude(state__in=FINAL_STATES).get(deployment_id=deployment_id)


@pytest.mark.parametrize(
    ("asked", "runs_on", "price"),
    [({"cloud_type": "community"}, "community", 1.2), ({"cloud_type": "secure"}, "secure", 2.0),
     ({}, "community", 1.2), ({"cloud_type": "any"}, "community", 1.2)],
)  # fmt: skip
def test_replicas_run_on_the_tier_asked_for_and_every_answer_says_which(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any,
    asked: dict[str, str], runs_on: str, price: float,
) -> None:  # fmt: skip
    with sim_cloud.sole_provider(settings, BOTH_TIERS["gpus"], community=BOTH_TIERS["community"]):
        created = create(client, alice, django_capture_on_commit_callbacks, **asked)
        assert created.status_code == 201, created.content
        assert created.json()["cloud_type"] == asked.get("cloud_type", "any")
        deployment_id = created.json()["id"]
        instance = live_instance(deployment_id)
        assert instance.state == InstanceState.READY and instance.tier == runs_on
        assert sim_cloud.LAUNCHED[instance.pk].tier == (None if asked.get("cloud_type", "any") == "any" else runs_on)

        shown = client.get(f"/api/v1/deployments/{deployment_id}", **alice.auth).json()
        assert shown["cloud_type"] == asked.get("cloud_type", "any")
        [replica] = shown["instances"]
        assert (replica["cloud_type"], replica["hourly_price_usd"]) == (runs_on, price)


def test_a_tier_no_provider_offers_is_refused_with_nothing_written(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with sim_cloud.sole_provider(settings, BOTH_TIERS["gpus"]):  # secure only
        refused = create(client, alice, django_capture_on_commit_callbacks, cloud_type="community")
        assert refused.status_code == 409
        assert refused.json()["error"]["message"] == "No provider offers community-cloud NVIDIA H100 in atl1."
        for bad, status in (("premium", 400), ("SECURE", 400), ("", 400), (1, 422), (None, 422)):
            answer = create(client, alice, django_capture_on_commit_callbacks, cloud_type=bad)
            assert answer.status_code == status, (bad, answer.content)
            assert answer.json()["error"]["param"] == "cloud_type"
        assert not Deployment.objects.filter(org=alice.org).exists()
        assert not sim_cloud.LAUNCHED or all(s.tag != settings.GPUCLOUD_FLEET_TAG for s in sim_cloud.LAUNCHED.values())


def test_a_replacement_waits_for_the_chosen_tier_rather_than_run_on_another(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with sim_cloud.sole_provider(settings, BOTH_TIERS["gpus"], community=BOTH_TIERS["community"]) as tag:
        created = create(client, alice, django_capture_on_commit_callbacks, cloud_type="community")
        first = live_instance(created.json()["id"])
        sim_cloud.provider_set(community={})  # the community machines are all gone
        sim_cloud.stop(first.pk)
        with django_capture_on_commit_callbacks(execute=True):
            fleet_reconcile(now=timezone.now() + timedelta(minutes=5))

        replacement = live_instance(created.json()["id"])
        assert replacement.pk != first.pk
        assert replacement.state == InstanceState.WAITING_FOR_CAPACITY  # billing nothing, launching nothing
        assert sim_cloud.running(tag) == []  # and not on the secure machines still free
