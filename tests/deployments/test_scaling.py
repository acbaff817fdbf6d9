"""Autoscaling settings (GET/PATCH /api/v1/deployments/{id}/scaling) with their bounds checked, and
the autoscaler's decisions driven by a scripted load on a fake clock: up after 3 checks above
target, down after 3 below, never outside min/max (a burst included), to zero after the idle
timeout, and bounds enforced at once after a change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from django.test import Client

from accounts.models import Membership
from accounts.roles import Role
from deployments.models import Deployment
from deployments.scaling.policy import Decision, Policy, Streaks, decide
from tests.support.pages import running
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


def patch(client: Client, persona: Persona, deployment: Deployment, body: dict[str, Any]) -> Any:
    return client.patch(f"/api/v1/deployments/{deployment.pk}/scaling", data=json.dumps(body),
                        content_type="application/json", **persona.auth)  # fmt: skip


def test_scaling_settings_read_and_change(client: Client, alice: Persona, catalog: None) -> None:
    deployment = running(alice, replicas=2)
    Deployment.objects.filter(pk=deployment.pk).update(min_replicas=2, max_replicas=2)
    before = client.get(f"/api/v1/deployments/{deployment.pk}/scaling", **alice.auth).json()
    assert before == {"min_replicas": 2, "max_replicas": 2, "scale_to_zero": False, "idle_timeout_seconds": 900,
                      "target": {"metric": "concurrency", "value": 4.0}, "replicas": 2,
                      "cold_start_wait_seconds": 60}  # fmt: skip
    changed = patch(client, alice, deployment, {"min_replicas": 0, "max_replicas": 5, "scale_to_zero": True,
                                                "idle_timeout_seconds": 300, "cold_start_wait_seconds": 0,
                                                "target": {"metric": "queue_depth", "value": 2}})  # fmt: skip
    assert changed.status_code == 200
    assert changed.json() | {"replicas": None} == {
        "min_replicas": 0, "max_replicas": 5, "scale_to_zero": True, "idle_timeout_seconds": 300,
        "target": {"metric": "queue_depth", "value": 2.0}, "replicas": None, "cold_start_wait_seconds": 0,
    }  # fmt: skip
    partial = patch(client, alice, deployment, {"max_replicas": 3})  # the rest stays
    assert (partial.json()["max_replicas"], partial.json()["idle_timeout_seconds"]) == (3, 300)


@pytest.mark.parametrize(
    ("body", "status", "param", "says"),
    [
        ({"min_replicas": 3, "max_replicas": 2}, 400, "min_replicas", "min_replicas (3) cannot exceed max"),
        ({"min_replicas": 3}, 409, "min_replicas", "min_replicas (3) cannot exceed max_replicas (1)."),  # its max now
        ({"min_replicas": 0, "scale_to_zero": False}, 400, "min_replicas", "min_replicas 0 needs scale_to_zero: true."),
        ({"min_replicas": 0}, 409, "min_replicas", "min_replicas 0 needs scale_to_zero: true."),
        ({"max_replicas": 0}, 400, "max_replicas", "max_replicas must be between 1 and 8."),
        ({"max_replicas": 99}, 400, "max_replicas", "max_replicas must be between 1 and 8."),
        ({"min_replicas": -1}, 400, "min_replicas", "min_replicas must be between 0 and 8."),
        ({"idle_timeout_seconds": 5}, 400, "idle_timeout_seconds", "idle_timeout_seconds must be between 60 and"),
        ({"target": {"metric": "gpu"}}, 400, "target", "target.metric must be one of concurrency, queue_depth."),
        ({"target": {"value": 0}}, 400, "target", "target.value must be above 0 and at most 1000."),
    ],
)  # fmt: skip
def test_out_of_bounds_settings_are_refused_and_nothing_changes(
    client: Client, alice: Persona, catalog: None, body: dict[str, Any], status: int, param: str, says: str
) -> None:
    """A rule the request breaks by itself is a 400; one it breaks against a current setting, a 409."""
    deployment = running(alice)
    response = patch(client, alice, deployment, body)
    assert response.status_code == status
    assert response.json()["error"]["param"] == param and response.json()["error"]["message"].startswith(says)
    fresh = Deployment.objects.get(pk=deployment.pk)
    assert (fresh.min_replicas, fresh.max_replicas, fresh.idle_timeout_seconds, fresh.scaling_target) == (1, 1, 900, 4)


@pytest.mark.parametrize("seconds", [-1, 601, "soon"])
def test_a_cold_start_wait_out_of_its_range_is_refused_and_nothing_changes(
    client: Client, alice: Persona, catalog: None, seconds: object
) -> None:
    deployment = running(alice)
    response = patch(client, alice, deployment, {"cold_start_wait_seconds": seconds})
    assert response.status_code == 422  # the schema's own range (0 to 600), as the description says
    assert response.json()["error"]["param"] == "cold_start_wait_seconds"
    assert Deployment.objects.get(pk=deployment.pk).cold_start_wait_seconds == 60


def test_viewers_other_orgs_and_stopped_deployments_cannot_change_scaling(
    client: Client, alice: Persona, bob: Persona, charlie: Persona, catalog: None
) -> None:
    deployment = running(alice)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    assert patch(client, bob, deployment, {"max_replicas": 4}).status_code == 403
    assert patch(client, charlie, deployment, {"max_replicas": 4}).status_code == 404
    assert client.get(f"/api/v1/deployments/{deployment.pk}/scaling", **charlie.auth).status_code == 404
    Deployment.objects.filter(pk=deployment.pk).update(status="stopped")
    assert patch(client, alice, deployment, {"max_replicas": 4}).status_code == 409
    assert Deployment.objects.get(pk=deployment.pk).max_replicas == 1


POLICY = Policy(min_replicas=1, max_replicas=3, scale_to_zero=True, idle_timeout_seconds=300, target=4)


def run(policy: Policy, loads: Sequence[float], *, replicas: int = 1, check_seconds: int = 30) -> list[int]:
    """Replicas after each check of a scripted load (requests in flight), on a fake clock."""
    streaks, seen, idle = Streaks(), [], 0.0
    for load in loads:
        idle = 0.0 if load else idle + check_seconds
        decision: Decision = decide(policy, streaks, replicas=replicas, load=load, idle_seconds=idle)
        replicas, streaks = decision.replicas, decision.streaks
        seen.append(replicas)
    return seen


def test_it_scales_up_after_three_checks_above_target_and_down_after_three_below() -> None:
    # 10 in flight on 1 replica (target 4): up at the 3rd check, up again 3 checks later; then idle-ish.
    assert run(POLICY, [10, 10, 10, 10, 10, 10, 10, 1, 1, 1, 1, 1, 1]) == [1, 1, 2, 2, 2, 3, 3, 3, 3, 2, 2, 2, 1]
    # A spike that does not last three checks changes nothing.
    assert run(POLICY, [10, 10, 0.5, 10, 10, 0.5]) == [1] * 6


def test_a_burst_never_exceeds_max_and_idle_never_goes_below_min() -> None:
    assert max(run(POLICY, [500] * 30)) == 3
    never_zero = Policy(min_replicas=2, max_replicas=3, scale_to_zero=False, idle_timeout_seconds=300, target=4)
    assert run(never_zero, [0] * 30, replicas=3)[-1] == 2


def test_it_scales_to_zero_after_the_idle_timeout_and_waits_for_the_gateway_to_wake_it() -> None:
    to_zero = Policy(min_replicas=0, max_replicas=2, scale_to_zero=True, idle_timeout_seconds=300, target=4)
    seen = run(to_zero, [1] + [0] * 12)  # a check every 30 s: 300 s of idle is the 10th empty check
    assert seen[:10] == [1] * 10 and seen[10:] == [0, 0, 0]
    decision = decide(to_zero, Streaks(), replicas=0, load=3, idle_seconds=0)
    assert decision.replicas == 0 and not decision.changed  # the wake path, not the autoscaler, starts it


def test_new_bounds_apply_at_the_next_check() -> None:
    assert decide(POLICY, Streaks(above=2), replicas=5, load=0, idle_seconds=0).replicas == 3
    raised = Policy(min_replicas=2, max_replicas=4, scale_to_zero=False, idle_timeout_seconds=300, target=4)
    decision = decide(raised, Streaks(), replicas=1, load=0, idle_seconds=None)
    assert (decision.replicas, decision.reason) == (2, "Brought within 2 to 4 replicas.")


def test_a_missed_sla_target_scales_up_at_any_load_and_blocks_scaling_down() -> None:
    """SLA-driven scaling: TTFT missed at 1 request in flight (well under the concurrency target)
    still adds a replica after three checks, up to max; while it is missed nothing is removed."""
    streaks, replicas, seen = Streaks(), 2, []
    for _ in range(9):
        decision = decide(POLICY, streaks, replicas=replicas, load=1, idle_seconds=0,
                          sla_missed="TTFT p95 812 ms > 500 ms")  # fmt: skip
        replicas, streaks = decision.replicas, decision.streaks
        seen.append((replicas, decision.reason))
    assert [r for r, _ in seen] == [2, 2, 3, 3, 3, 3, 3, 3, 3]  # never past max (3), never down at load 1
    assert seen[2][1] == "SLA missed (TTFT p95 812 ms > 500 ms) for 3 checks."
    # Met again: the quiet load scales it down as usual.
    assert run(POLICY, [1, 1, 1], replicas=3) == [3, 3, 2]
