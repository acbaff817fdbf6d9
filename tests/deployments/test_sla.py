"""SLA targets (GET/PATCH /api/v1/deployments/{id}/sla): set, removed with null, bounds refused with
nothing saved; the monitor opens a breach when the last five minutes miss a target (time, metric,
target, measured), closes it when a check meets it again, ignores windows without traffic; GET
reports targets, breaches in 24 h, the last measured figures and the history."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Membership
from accounts.roles import Role
from deployments.models import Deployment, RequestMinute
from deployments.sla import sla_check, sla_monitor_round
from deployments.traffic import bucket_upper_ms
from tests.support.pages import running
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


def patch(client: Client, persona: Persona, deployment: Deployment, body: dict[str, Any]) -> Any:
    return client.patch(f"/api/v1/deployments/{deployment.pk}/sla", data=json.dumps(body),
                        content_type="application/json", **persona.auth)  # fmt: skip


def minute(deployment: Deployment, at: Any, *, ttft_bucket: str, tokens: int, generation_ms: float) -> None:
    RequestMinute.objects.create(
        deployment=deployment, minute=at.replace(second=0, microsecond=0), requests=10, ttft_count=10,
        ttft_ms_sum=1000, completion_tokens=tokens, generation_ms_sum=generation_ms, latency_hist={"50": 10},
        ttft_hist={ttft_bucket: 10},
    )  # fmt: skip


def test_targets_are_set_removed_and_bounded(
    client: Client, alice: Persona, bob: Persona, charlie: Persona, catalog: None
) -> None:
    deployment = running(alice)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    assert patch(client, bob, deployment, {"ttft_target_ms": 500}).status_code == 403
    assert patch(client, charlie, deployment, {"ttft_target_ms": 500}).status_code == 404
    body = patch(client, alice, deployment, {"ttft_target_ms": 500, "throughput_target_tps": 20,
                                             "concurrency_limit": 8}).json()  # fmt: skip
    assert (body["ttft_target_ms"], body["throughput_target_tps"], body["concurrency_limit"]) == (500, 20.0, 8)
    assert body["breach_count_24h"] == 0 and body["breaches"] == [] and body["last_ttft_ms"] is None
    removed = patch(client, alice, deployment, {"throughput_target_tps": None}).json()
    assert (removed["ttft_target_ms"], removed["throughput_target_tps"]) == (500, None)  # the other stays
    refused = patch(client, alice, deployment, {"ttft_target_ms": 0, "concurrency_limit": 4})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "ttft_target_ms"
    assert Deployment.objects.get(pk=deployment.pk).concurrency_limit == 8  # nothing of a refusal is saved


def test_the_monitor_opens_and_closes_breaches_from_measured_windows(alice: Persona, catalog: None) -> None:

    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(ttft_target_ms=200, throughput_target_tps=50)
    deployment.refresh_from_db()
    now = timezone.now()
    assert sla_check(deployment, now=now) == []  # no traffic: not judged
    slow = bucket_upper_ms(70)
    assert slow > 200
    minute(deployment, now - timedelta(minutes=1), ttft_bucket="70", tokens=900, generation_ms=30_000)  # 30 tok/s
    happened = sla_check(deployment, now=now)
    assert sorted((kind, b.metric, b.target, round(b.measured, 2)) for kind, b in happened) == [
        ("breach", "throughput_tps", 50.0, 30.0), ("breach", "ttft_ms", 200.0, round(slow, 2)),
    ]  # fmt: skip
    assert sla_check(deployment, now=now) == []  # still missed: the same breach stays open
    later = now + timedelta(minutes=10)
    minute(deployment, later - timedelta(minutes=1), ttft_bucket="10", tokens=6000, generation_ms=60_000)
    assert sla_monitor_round(now=later) == 2  # both recovered
    report = Client()
    report.force_login(alice.user)
    body = report.get(f"/api/v1/deployments/{deployment.pk}/sla", **alice.auth).json()
    assert body["breach_count_24h"] == 2 and all(b["recovered_at"] for b in body["breaches"])
    assert body["last_throughput_tps"] == 30.0  # the real last five minutes hold the slow minute
