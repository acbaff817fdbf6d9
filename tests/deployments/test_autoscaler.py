"""The autoscaler applied: replicas added (first minute held, provisioned after commit) or the newest
removed, each change an event, billing following the instances; a round reads in-flight requests
from the gateway's counters and scales up after three busy checks, down after three quiet ones,
to zero when idle, and a refusal (no credit) changes nothing."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from django.utils import timezone

from deployments import services
from deployments.models import Deployment, DeploymentEvent, SlaBreach, SlaMetric
from deployments.scaling import autoscaler
from fleet.models import Instance, InstanceState
from tests.fakes.engine_server import Engine, EngineThread
from tests.support.billing import fund
from tests.support.gateway import ENGINE_KEY, serving_deployment
from tests.support.pages import running
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000


def live(deployment: Deployment) -> list[Instance]:
    return list(deployment.instances.exclude(state__in=("terminated", "failed", "terminating")).order_by("created_at"))


def test_scaling_up_adds_held_replicas_and_down_removes_the_newest(
    alice: Persona, catalog: None, tasks: dict[str, list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 5 * USD)
    deployment = running(alice)
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_scale(deployment_id=deployment.pk, replicas=3, reason="busy")
    deployment.refresh_from_db()
    added = live(deployment)[1:]
    assert (deployment.desired_replicas, deployment.status, len(added)) == (3, "scaling", 2)
    assert tasks["provision"] == [i.pk for i in added]
    assert DeploymentEvent.objects.filter(deployment=deployment, reason="Scaled 1 → 3: busy").exists()
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_scale(deployment_id=deployment.pk, replicas=1, reason="quiet")
    deployment.refresh_from_db()
    assert deployment.desired_replicas == 1 and tasks["terminate"] == [added[1].pk, added[0].pk]  # newest first
    assert [i.state for i in Instance.objects.filter(pk__in=tasks["terminate"])] == [InstanceState.TERMINATING] * 2


def test_a_round_scales_on_in_flight_requests_and_to_zero_when_idle(
    alice: Persona, catalog: None, tasks: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    cache.clear()
    fund(alice.org, 5 * USD)
    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(
        min_replicas=0, max_replicas=2, scale_to_zero=True, idle_timeout_seconds=300, scaling_target=4,
        started_at=timezone.now() - timedelta(hours=1),
    )  # fmt: skip
    load = {deployment.pk: 12}
    monkeypatch.setattr(autoscaler.traffic.store(), "in_flight", lambda: dict(load))
    now = timezone.now().timestamp()
    with django_capture_on_commit_callbacks(execute=True):
        rounds = [autoscaler.autoscale_round(now=now + 30 * n) for n in range(3)]
    assert rounds == [{}, {}, {deployment.pk: 2}]
    Instance.objects.filter(deployment=deployment).update(state=InstanceState.READY)
    Deployment.objects.filter(pk=deployment.pk).update(status="active")
    load[deployment.pk] = 0  # quiet, and no request for more than the idle timeout (it served none)
    with django_capture_on_commit_callbacks(execute=True):
        assert autoscaler.autoscale_round(now=now + 120) == {deployment.pk: 0}
    deployment.refresh_from_db()
    assert (deployment.status, deployment.desired_replicas) == ("scaled_to_zero", 0)
    assert live(deployment) == []


def test_a_scale_up_the_org_cannot_pay_for_changes_nothing(
    alice: Persona, catalog: None, tasks: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache.clear()
    deployment = running(alice)  # no credit at all
    Deployment.objects.filter(pk=deployment.pk).update(min_replicas=1, max_replicas=3, scaling_target=1)
    monkeypatch.setattr(autoscaler.traffic.store(), "in_flight", lambda: {deployment.pk: 50})
    for n in range(4):
        assert autoscaler.autoscale_round(now=1e9 + 30 * n) == {}
    deployment.refresh_from_db()
    assert deployment.desired_replicas == 1 and len(live(deployment)) == 1 and tasks["provision"] == []


@pytest.mark.slow
def test_a_queue_depth_target_scales_on_what_waits_in_the_engines(
    alice: Persona, tasks: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    """Two requests wait behind a busy slot on the one replica (vLLM's num_requests_waiting on its
    /metrics): above a target of 1 waiting per replica for 3 checks, a replica is added; a replica
    that stops answering /metrics leaves the load unknown and nothing changes on guesswork."""
    cache.clear()
    engine = EngineThread(Engine(api_key=ENGINE_KEY))
    engine.engine.behaviour.max_running = 1
    engine.engine.behaviour.ttft_ms = 4000
    with engine:
        deployment = serving_deployment(alice, [engine])
        fund(alice.org, 5 * USD)
        Deployment.objects.filter(pk=deployment.pk).update(min_replicas=1, max_replicas=3, scaling_metric="queue_depth",
                                                          scaling_target=1)  # fmt: skip
        monkeypatch.setattr(autoscaler.traffic.store(), "in_flight", lambda: {deployment.pk: 3})

        def ask() -> None:
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
            httpx.post(f"{engine.url}/v1/chat/completions", headers={"Authorization": f"Bearer {ENGINE_KEY}"},
                       json=body, timeout=30)  # fmt: skip

        load = [threading.Thread(target=ask) for _ in range(3)]
        for thread in load:
            thread.start()
        time.sleep(0.5)
        with django_capture_on_commit_callbacks(execute=True):
            rounds = [autoscaler.autoscale_round(now=1e9 + 30 * n) for n in range(3)]
        assert rounds == [{}, {}, {deployment.pk: 2}]  # 2 waiting on 1 replica > 1: up after 3 checks
        engine.engine.behaviour.ttft_ms = 0  # seen waiting: the queued requests need not take 4 s each now
        for thread in load:
            thread.join()
    # The engine is gone: the queue is unknown, and unknown is not "empty" (no scale-down on it).
    Instance.objects.filter(deployment=deployment).update(state=InstanceState.READY)
    Deployment.objects.filter(pk=deployment.pk).update(status="active")
    with django_capture_on_commit_callbacks(execute=True):
        assert [autoscaler.autoscale_round(now=1e9 + 30 * n) for n in range(3, 7)] == [{}, {}, {}, {}]


def test_an_open_sla_breach_adds_a_replica_at_low_load(
    alice: Persona, catalog: None, tasks: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    cache.clear()
    fund(alice.org, 5 * USD)
    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(min_replicas=1, max_replicas=2, scaling_target=4,
                                                       ttft_target_ms=500)  # fmt: skip
    monkeypatch.setattr(autoscaler.traffic.store(), "in_flight", lambda: {deployment.pk: 1})
    SlaBreach.objects.create(deployment=deployment, metric=SlaMetric.TTFT, target=500, measured=812)
    with django_capture_on_commit_callbacks(execute=True):
        rounds = [autoscaler.autoscale_round(now=1e9 + 30 * n) for n in range(3)]
    assert rounds == [{}, {}, {deployment.pk: 2}]
    assert DeploymentEvent.objects.filter(
        deployment=deployment, reason="Scaled 1 → 2: SLA missed (TTFT p95 812 ms > 500 ms) for 3 checks."
    ).exists()
