"""Issue 17: a spot pod without activity for 15 minutes (by default) is terminated, its volume kept;
requests through the pod proxy and SSH sessions (where the provider tells) count as activity; an
on-demand pod runs until stopped unless it asks for an idle timeout."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.test import Client

from deployments.models import Deployment, Pod
from deployments.pods import pods_idle_round
from fleet.models import Instance
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.personas import Persona

USD = 1_000_000
POD = {"image": "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04", "gpu_type": "h100", "region": "atl1",
       "ports": ["8888/http"]}  # fmt: skip


def create(client: Client, persona: Persona, capture: Any, **body: Any) -> Any:
    with capture(execute=True):
        return client.post("/api/v1/pods", data=json.dumps({**POD, **body}), content_type="application/json",
                           **persona.auth)  # fmt: skip


def test_an_idle_spot_pod_is_terminated_after_15_minutes_and_activity_keeps_it(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 20 * USD)
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 4}}, spot=True):
        idle = create(client, alice, django_capture_on_commit_callbacks, spot=True).json()
        used = create(client, alice, django_capture_on_commit_callbacks, spot=True).json()
        never = create(client, alice, django_capture_on_commit_callbacks, spot=True, idle_timeout_minutes=0).json()
        assert (idle["idle_timeout_minutes"], never["idle_timeout_minutes"]) == (15, None)
        ready = Instance.objects.get(deployment_id=used["id"]).ready_at
        assert ready is not None
        cache.set(f"pod-activity:{used['id']}", (ready + timedelta(minutes=10)).timestamp())  # a request then

        assert pods_idle_round(now=ready + timedelta(minutes=14)) == []
        with django_capture_on_commit_callbacks(execute=True):
            ended = pods_idle_round(now=ready + timedelta(minutes=16))
        assert ended == [idle["id"]]  # the used one was active 6 minutes ago; the other never idles out
        shown = client.get(f"/api/v1/pods/{idle['id']}", **alice.auth).json()
        assert shown["status"] == "terminated" and shown["status_reason"].startswith("Idle for 15 minutes")
        with django_capture_on_commit_callbacks(execute=True):
            assert pods_idle_round(now=ready + timedelta(minutes=26)) == [used["id"]]
        assert Deployment.objects.get(pk=never["id"]).status == "active"


def test_on_demand_pods_do_not_idle_out_unless_they_ask(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 20 * USD)
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 4}}):
        plain = create(client, alice, django_capture_on_commit_callbacks).json()
        asked = create(client, alice, django_capture_on_commit_callbacks, idle_timeout_minutes=30).json()
        assert (plain["idle_timeout_minutes"], asked["idle_timeout_minutes"]) == (None, 30)
        ready = Instance.objects.get(deployment_id=asked["id"]).ready_at
        assert ready is not None
        with django_capture_on_commit_callbacks(execute=True):
            assert pods_idle_round(now=ready + timedelta(days=1)) == [asked["id"]]
        for bad in (3, 10081, -1):
            refused = client.post("/api/v1/pods", data=json.dumps({**POD, "idle_timeout_minutes": bad}),
                                  content_type="application/json", **alice.auth)  # fmt: skip
            assert refused.status_code in (400, 422) and refused.json()["error"]["param"] == "idle_timeout_minutes"
        assert Pod.objects.count() == 2
