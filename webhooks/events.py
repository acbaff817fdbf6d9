"""The events a subscription can ask for, and how the rest of the platform fires them.

`event_emit` runs inside the transaction that made the change, so an event exists exactly when the
change committed; its deliveries are attempted once that commit is done. Deployment events go to
the deployment's own subscriptions (a pod's pod.* events to the pod's); account events (balance,
auto-refill) to every subscription of the org that lists them."""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone

from gpucloud.core.jobs import enqueue
from webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEvent, WebhookSubscription

logger = logging.getLogger(__name__)

DEPLOYMENT_EVENTS: dict[str, str] = {
    "deployment.active": "Provisioning is complete and the deployment serves requests.",
    "deployment.degraded": "A replica was lost or is unhealthy; the deployment serves with fewer.",
    "deployment.recovered": "Healthy again: after degraded, or an SLA target met again after a breach.",
    "deployment.sla_breach": "The last window missed a TTFT or throughput target.",
    "deployment.scaled": "The replica count changed (autoscaler, scale to zero, a wake-up or a manual change).",
    "deployment.preempted": "The provider took a spot replica back; a replacement is being launched.",
    "deployment.failed": "The deployment could not run (the reason is in the data).",
    "deployment.stopped": "Every replica is terminated; billing has stopped.",
}
POD_EVENTS: dict[str, str] = {
    "pod.running": "The pod's machine is up: after it was created or started again.",
    "pod.stopped": "The pod's machine is gone and bills no more (its volume stays); status: stopped or terminated.",
    "pod.preempted": "The provider took a spot pod's machine back: the pod stops (volume kept); pod.stopped follows.",
    "pod.failed": "The pod could not run (the reason is in the data).",
}
ACCOUNT_EVENTS: dict[str, str] = {
    "balance.low": "The organization's available credit fell below the low-balance threshold.",
    "autorefill.failed": "An automatic top-up from the saved card failed; auto-refill is now off.",
}
EVENT_TYPES: dict[str, str] = {**DEPLOYMENT_EVENTS, **ACCOUNT_EVENTS, **POD_EVENTS}
# What a subscription may list, by what it watches: its own kind's events and the account's.
SUBSCRIBABLE: dict[str, tuple[str, ...]] = {
    "deployment": (*DEPLOYMENT_EVENTS, *ACCOUNT_EVENTS),
    "pod": (*POD_EVENTS, *ACCOUNT_EVENTS),
}
TEST_EVENT = "webhook.test"  # sent by the test endpoint to one subscription, whatever it lists


def event_emit(
    *, org_id: str, event_type: str, data: dict[str, Any], dedupe_key: str, deployment_id: str | None = None
) -> WebhookEvent | None:
    """Record the event and a delivery for each enabled subscription that wants it; None when no
    one does. Firing the same `dedupe_key` again changes nothing."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    subscriptions = WebhookSubscription.objects.filter(org_id=org_id, enabled=True)
    if event_type not in ACCOUNT_EVENTS:
        subscriptions = subscriptions.filter(deployment_id=deployment_id)
    wanted = [s for s in subscriptions if event_type in s.events]  # a few rows; JSON lookups differ per database
    if not wanted:
        return None
    event, created = WebhookEvent.objects.get_or_create(
        dedupe_key=dedupe_key[:200],
        defaults={"org_id": org_id, "deployment_id": deployment_id, "type": event_type, "data": data},
    )
    if created:
        deliveries_create(event, wanted)
    return event


def deliveries_create(event: WebhookEvent, subscriptions: list[WebhookSubscription]) -> list[WebhookDelivery]:
    now = timezone.now()
    deliveries = [
        WebhookDelivery.objects.create(subscription=s, event=event, status=DeliveryStatus.PENDING, next_attempt_at=now)
        for s in subscriptions
    ]
    for delivery in deliveries:
        enqueue("webhooks.tasks.webhook_deliver_task", delivery.pk)
    return deliveries


def payload(event: WebhookEvent) -> dict[str, Any]:
    """The body every attempt sends (Standard Webhooks' {type, timestamp, data}, plus the id)."""
    return {
        "id": event.pk,
        "type": event.type,
        "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": event.data,
    }


def deployment_event_emit(deployment: Any, event_type: str, *, key: object, **data: Any) -> WebhookEvent | None:
    """A deployment event, its data led by who and where it is; `key` names the change (a
    DeploymentEvent's or a breach's id) so the same change never fires twice."""
    return event_emit(
        org_id=deployment.org_id,
        deployment_id=deployment.pk,
        event_type=event_type,
        data={
            "deployment_id": deployment.pk,
            "name": deployment.name,
            "status": deployment.status,
            "replicas": deployment.desired_replicas,
            **data,
        },
        dedupe_key=f"{event_type}:{deployment.pk}:{key}",
    )
