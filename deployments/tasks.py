"""Deployment tasks: take a deployment id (or none, for a periodic round), call one step, safe to
run twice. Instances' own tasks are the fleet's (fleet/tasks.py)."""

from __future__ import annotations

import time

from celery import shared_task

from accounts.models import Organization
from deployments import metrics, pods, preset_rollout, services, sla, volumes
from deployments.scaling import autoscaler
from fleet.providers.base import ProviderError

DRAIN_POLL_SECONDS = 0.5  # between looks at a draining replica during a rollout


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def deployment_rollout_task(deployment_id: str, rounds_left: int = 20) -> None:
    """Take a preset rollout's next steps. While an old replica drains, wait for it here and go on
    (re-scheduled while it lasts, bounded; the reconciler's round advances rollouts too)."""
    for _ in range(40):
        if preset_rollout.rollout_advance(deployment_id=deployment_id) != preset_rollout.Step.DRAINING:
            return
        time.sleep(DRAIN_POLL_SECONDS)
    if rounds_left > 0:
        deployment_rollout_task.apply_async((deployment_id, rounds_left - 1), countdown=1)


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def request_minutes_rollup_task() -> None:
    metrics.request_minutes_rollup()


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def pods_idle_task() -> None:
    pods.pods_idle_round()


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def autoscale_task() -> None:
    autoscaler.autoscale_round()


@shared_task(ignore_result=True, soft_time_limit=50, time_limit=60)
def sla_monitor_task() -> None:
    sla.sla_monitor_round()


@shared_task(ignore_result=True, soft_time_limit=100, time_limit=120)
def workloads_stop_for_nonpayment_task(org_id: str) -> None:
    """Billing found the org at $0 past its grace period (billing.policy): stop what runs."""
    org = Organization.objects.filter(pk=org_id).first()
    if org is not None:
        services.deployments_stop_for_nonpayment(org=org)


# Volumes: one step each, safe to run twice; a provider's passing failure is retried with backoff.
VOLUME_RETRY = {"autoretry_for": (ProviderError,), "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 8}


@shared_task(ignore_result=True, soft_time_limit=100, time_limit=120)
def volumes_reconcile_task() -> None:
    volumes.volumes_reconcile()


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90, **VOLUME_RETRY)
def volume_provision_task(volume_id: str) -> None:
    volumes.volume_provision(volume_id)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90, **VOLUME_RETRY)
def volume_resize_task(volume_id: str) -> None:
    volumes.volume_resize(volume_id)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90, **VOLUME_RETRY)
def volume_remove_task(volume_id: str) -> None:
    volumes.volume_remove(volume_id)
