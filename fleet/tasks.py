"""Fleet tasks: take an instance id, call one provisioning step, safe to run twice.

Acks are early (Celery's default): a worker killed mid-task loses the message, and the
reconciler (every 30 s) is what finishes the job, not redelivery.
"""

from __future__ import annotations

import time

from celery import shared_task

from catalog.models import Provider
from fleet import offers, provisioning, reconciler
from fleet.providers.base import ProviderError
from fleet.workloads import workload

READY_POLL_SECONDS = 0.5  # between health checks of a loading engine
RETRY = {"autoretry_for": (ProviderError,), "retry_backoff": 2, "retry_backoff_max": 60, "max_retries": 8}


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150, **RETRY)
def instance_provision_task(instance_id: str) -> None:
    if provisioning.instance_provision(instance_id) in ("waiting", "failed"):
        workload().instance_settled(instance_id)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def instance_wait_ready_task(instance_id: str, polls_left: int = 600) -> None:
    """Poll the engine's health; re-schedules itself while it loads (bounded by the ready timeout)."""
    for _ in range(20):
        outcome = provisioning.instance_check_ready(instance_id)
        if outcome is not None:
            workload().instance_settled(instance_id)
            return
        time.sleep(READY_POLL_SECONDS)
    if polls_left > 0:
        instance_wait_ready_task.apply_async((instance_id, polls_left - 1), countdown=2)


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90, **RETRY)
def instance_terminate_task(instance_id: str) -> None:
    provisioning.instance_terminate(instance_id)


@shared_task(ignore_result=True, soft_time_limit=100, time_limit=120)
def fleet_reconcile_task() -> None:
    reconciler.fleet_reconcile()


@shared_task(ignore_result=True, soft_time_limit=100, time_limit=120)
def offers_refresh_task(provider_slug: str | None = None) -> None:
    """Refresh one provider's stored offers, or every provider's. No retry: a failed refresh keeps the
    rows, and the next beat run (GPUCLOUD_OFFERS_REFRESH_SECONDS) asks again."""
    if provider_slug is None:
        offers.offers_refresh_all()
        return
    provider = Provider.objects.filter(slug=provider_slug).first()
    if provider is not None:  # a deleted provider's offers went with it
        offers.offers_refresh(provider)
