"""Fleet tasks: take an instance (or deployment) id, call one provisioning (or rollout) step, safe
to run twice.

Acks are early (Celery's default): a worker killed mid-task loses the message, and the
reconciler (every 30 s) is what finishes the job, not redelivery.
"""

from __future__ import annotations

from celery import shared_task

from catalog.providers.base import ProviderError
from deployments import provisioning, reconciler, rollout

RETRY = {"autoretry_for": (ProviderError,), "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 8}


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150, **RETRY)
def instance_provision_task(instance_id: str) -> None:
    if provisioning.instance_provision(instance_id) in ("waiting", "failed"):
        _rollout_nudge(instance_id)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def instance_wait_ready_task(instance_id: str, polls_left: int = 600) -> None:
    """Poll the engine's health; re-schedules itself while it loads (bounded by the ready timeout)."""
    import time

    for _ in range(20):
        outcome = provisioning.instance_check_ready(instance_id)
        if outcome is not None:
            _rollout_nudge(instance_id)
            return
        time.sleep(0.5)
    if polls_left > 0:
        instance_wait_ready_task.apply_async((instance_id, polls_left - 1), countdown=2)


def _rollout_nudge(instance_id: str) -> None:
    """A replica of a rolling deployment is ready or will not be: the rollout's next step now,
    rather than at the reconciler's next round."""
    deployment_id = rollout.rolling_deployment_of(instance_id)
    if deployment_id is not None:
        deployment_rollout_task.delay(deployment_id)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def deployment_rollout_task(deployment_id: str, rounds_left: int = 20) -> None:
    """Take a preset rollout's next steps. While an old replica drains, wait for it here and go on
    (re-scheduled while it lasts, bounded; the reconciler's round advances rollouts too)."""
    import time

    for _ in range(40):
        if rollout.rollout_advance(deployment_id=deployment_id) != rollout.Step.DRAINING:
            return
        time.sleep(0.5)
    if rounds_left > 0:
        deployment_rollout_task.apply_async((deployment_id, rounds_left - 1), countdown=1)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90, **RETRY)
def instance_terminate_task(instance_id: str) -> None:
    provisioning.instance_terminate(instance_id)


@shared_task(ignore_result=True, soft_time_limit=100, time_limit=120)
def fleet_reconcile_task() -> None:
    reconciler.fleet_reconcile()


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def request_minutes_rollup_task() -> None:
    from deployments.metrics import request_minutes_rollup

    request_minutes_rollup()


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def autoscale_task() -> None:
    from deployments.autoscaler import autoscale_round

    autoscale_round()


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def sla_monitor_task() -> None:
    from deployments.sla import sla_monitor_round

    sla_monitor_round()
