"""Issue 18's rent across clouds, against the RunPod and Vast.ai test servers: a RunPod offer that is no
longer listed falls over to Vast's offer of the same terms within the ceiling, the pod runs at Vast (not
at RunPod, not at a dearer RunPod offer of the same GPU) and is billed as any pod."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing.invariants import ledger_violations
from billing.models import Service, UsageMeter
from catalog.models import Offer
from fleet.models import LIVE_STATES, Instance
from tests.deployments.test_offer_rent import oid, rent
from tests.deployments.test_pods import call
from tests.fakes.clouds.runpod import RunPodCloud
from tests.fakes.clouds.vastai import VastCloud
from tests.fleet.clouds.test_runpod import cloud, platform, start_cloud
from tests.fleet.clouds.test_vastai import vast
from tests.fleet.clouds.test_vastai_pods import shown_when, with_reconcile
from tests.support.billing import billing_mismatches, fund
from tests.support.personas import Persona

# RunPod's and Vast's test clouds, each checked against its published description, with the platform on both.
__all__ = ["cloud", "platform", "start_cloud", "vast"]
pytestmark = pytest.mark.django_db
USD = 1_000_000
IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"


def test_a_runpod_offer_gone_falls_over_to_vast_where_the_pod_runs(
    client: Client, alice: Persona, cloud: RunPodCloud, platform: str, vast: VastCloud, settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    capture = django_capture_on_commit_callbacks
    fund(alice.org, 20 * USD)
    gone = Offer.objects.get(provider="runpod", gpu_type="h100", region="nyc2", tier="secure", spot=False)
    at_vast = Offer.objects.get(provider="vast", gpu_type="h100", region="atl1", tier="secure", spot=False)
    dearer = Offer.objects.get(provider="runpod", gpu_type="h100", region="atl1", tier="secure", spot=False)
    assert gone.price_per_hour_micros < at_vast.price_per_hour_micros < dearer.price_per_hour_micros
    Offer.objects.filter(pk=gone.pk).update(seen_at=timezone.now() - timedelta(days=1))  # RunPod stopped listing it

    ceiling = at_vast.price_per_hour_micros / USD + 0.01
    answer = rent(client, alice, oid(gone), {"pod": {"image": IMAGE}, "max_price_per_hour_usd": ceiling}, capture)
    assert answer.status_code == 201, answer.content
    got = answer.json()
    assert (got["offer_id"], got["requested_offer_id"], got["billing"]) == (oid(at_vast), oid(gone), "on_demand")
    assert got["tried"] == [{"offer_id": oid(gone), "reason": "gone: its provider no longer lists it"}]
    assert got["price_per_hour_usd"] == at_vast.price_per_hour_micros / USD

    shown = shown_when(client, alice, got["id"], "running")
    assert shown["status"] == "running" and shown["region"] == "atl1", shown
    assert shown["machine"]["provider"] == "vast"
    machine = Instance.objects.get(deployment_id=got["id"])
    assert vast.machines[machine.provider_instance_id].request["image"] == IMAGE
    assert cloud.requests_to("POST", "/v2/pods") == []  # nothing asked of RunPod
    assert UsageMeter.objects.get(meter_key=machine.pk).service == Service.POD

    assert call(client, alice, "delete", f"/pods/{got['id']}", capture=capture).status_code == 200
    deadline = time.monotonic() + 15
    while vast.machines and time.monotonic() < deadline:
        with capture(execute=True):
            with_reconcile()
        time.sleep(0.05)
    assert vast.machines == {} and not Instance.objects.filter(state__in=LIVE_STATES).exists()
    assert billing_mismatches() == [] and ledger_violations() == []
