"""Managing a deployment's webhook subscriptions: create (the secret is shown once), change,
delete, send a test event, redeliver. Every path that takes a URL checks where it resolves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from gpucloud.core.errors import Conflict, InvalidRequest, NotFound
from gpucloud.core.jobs import enqueue
from webhooks import guard
from webhooks.delivery import delivery_attempt
from webhooks.events import EVENT_TYPES, SUBSCRIBABLE, TEST_EVENT, deliveries_create
from webhooks.models import (
    DeliveryStatus,
    RetrySchedule,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from webhooks.signing import secret_generate


class Deployment(Protocol):
    """What a subscription watches: a deployment or a pod (deployments.models.Deployment, a layer
    above); `subject` in the services below says which, and so which events it may list."""

    org_id: str

    @property
    def pk(self) -> Any: ...


MAX_PER_DEPLOYMENT = 10


@dataclass(frozen=True)
class SubscriptionChange:
    url: str | None = None
    events: list[str] | None = None
    retry_schedule: str | None = None
    enabled: bool | None = None


def url_check(url: str) -> str:
    """The URL as stored, or 400 saying why no delivery could go there."""
    try:
        destination = guard.destination_check(
            url, allow_http=settings.DEBUG, allowed_hosts=settings.WEBHOOK_ALLOWED_HOSTS
        )
        guard.resolve_checked(destination, allowed_hosts=settings.WEBHOOK_ALLOWED_HOSTS)
    except guard.UnsafeDestination as exc:
        raise InvalidRequest(str(exc), param="url") from None
    if len(destination.url) > 2000:
        raise InvalidRequest("The webhook URL is longer than 2000 characters.", param="url")
    return destination.url


def events_check(events: list[str], subject: str = "deployment") -> list[str]:
    """The events listed, once each; 400 for none, an unknown one, or one of another subject's
    (a pod's webhook takes pod.* events, a deployment's deployment.* ones; both the account's)."""
    allowed = SUBSCRIBABLE[subject]
    if not events:
        raise InvalidRequest("Name at least one event: " + ", ".join(allowed) + ".", param="events")
    for event in events:
        if event not in EVENT_TYPES:
            raise InvalidRequest(f"Unknown event {event!r}; events are {', '.join(allowed)}.", param="events")
        if event not in allowed:
            raise InvalidRequest(
                f"{event!r} is not an event of a {subject}; a {subject}'s webhook takes {', '.join(allowed)}.",
                param="events",
            )
    return list(dict.fromkeys(events))


def schedule_check(schedule: str) -> str:
    if schedule not in RetrySchedule.values:
        choices = ", ".join(RetrySchedule.values)
        raise InvalidRequest(f"retry_schedule must be one of {choices}.", param="retry_schedule")
    return schedule


def subscription_create(
    *,
    principal: Principal,
    deployment: Deployment,
    url: str,
    events: list[str],
    retry_schedule: str | None = None,
    subject: str = "deployment",
) -> WebhookSubscription:
    principal.require(CAN_WRITE, "adding webhooks")
    events = events_check(events, subject)
    schedule = schedule_check(retry_schedule or RetrySchedule.STANDARD)
    url = url_check(url)
    with transaction.atomic():
        Organization.objects.select_for_update().filter(pk=deployment.org_id).first()  # counts below stay true
        if WebhookSubscription.objects.filter(deployment_id=deployment.pk).count() >= MAX_PER_DEPLOYMENT:
            raise Conflict(f"A deployment has at most {MAX_PER_DEPLOYMENT} webhooks; delete one first.")
        return WebhookSubscription.objects.create(
            org_id=deployment.org_id, deployment_id=deployment.pk, url=url, events=events, retry_schedule=schedule,
            secret=secret_generate(), created_by=principal.user,
        )  # fmt: skip


def subscription_get(deployment: Deployment, webhook_id: str) -> WebhookSubscription:
    subscription = WebhookSubscription.objects.filter(deployment_id=deployment.pk, pk=webhook_id).first()
    if subscription is None:
        raise NotFound(f"No webhook {webhook_id!r} on this deployment.", param="webhook_id")
    return subscription


def subscription_update(
    *, principal: Principal, subscription: WebhookSubscription, change: SubscriptionChange, subject: str = "deployment"
) -> WebhookSubscription:
    """Change what was given; turning a disabled subscription back on clears why it was disabled."""
    principal.require(CAN_WRITE, "changing webhooks")
    fields: dict[str, Any] = {}
    if change.events is not None:
        fields["events"] = events_check(change.events, subject)
    if change.retry_schedule is not None:
        fields["retry_schedule"] = schedule_check(change.retry_schedule)
    if change.url is not None:
        fields["url"] = url_check(change.url)
    if change.enabled is not None:
        fields["enabled"] = change.enabled
        if change.enabled:
            fields["disabled_reason"] = ""
        elif not subscription.disabled_reason:
            fields["disabled_reason"] = "Disabled by a user."
    with transaction.atomic():
        locked = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        for name, value in fields.items():
            setattr(locked, name, value)
        if fields:
            locked.save(update_fields=list(fields))
    return locked


def subscription_delete(*, principal: Principal, subscription: WebhookSubscription) -> None:
    principal.require(CAN_WRITE, "deleting webhooks")
    subscription.delete()


def subscription_test(*, principal: Principal, subscription: WebhookSubscription) -> WebhookDelivery:
    """Send a `webhook.test` event to this subscription now and return how it went (further
    attempts, if it failed, follow the subscription's schedule like any delivery)."""
    principal.require(CAN_WRITE, "testing webhooks")
    if not subscription.enabled:
        raise Conflict("This webhook is disabled; enable it (PATCH enabled: true) before testing it.")
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            org_id=subscription.org_id, deployment_id=subscription.deployment_id, type=TEST_EVENT,
            data={"webhook_id": subscription.pk, "deployment_id": subscription.deployment_id},
            dedupe_key=f"{TEST_EVENT}:{subscription.pk}:{timezone.now().timestamp()}",
        )  # fmt: skip
        (delivery,) = deliveries_create(event, [subscription])
    return delivery_attempt(delivery.pk) or WebhookDelivery.objects.get(pk=delivery.pk)


def delivery_redeliver(*, principal: Principal, subscription: WebhookSubscription, delivery_id: str) -> WebhookDelivery:
    """Attempt a finished delivery again from the start of its schedule (same event, same id)."""
    principal.require(CAN_WRITE, "redelivering webhooks")
    if not subscription.enabled:
        raise Conflict("This webhook is disabled; enable it (PATCH enabled: true) before redelivering.")
    with transaction.atomic():
        delivery = subscription.deliveries.select_for_update().filter(pk=delivery_id).first()
        if delivery is None:
            raise NotFound(f"No delivery {delivery_id!r} for this webhook.", param="delivery_id")
        if delivery.status == DeliveryStatus.PENDING:
            raise Conflict("This delivery is still being attempted; its next attempt is scheduled.")
        delivery.status = DeliveryStatus.PENDING
        delivery.attempts = 0
        delivery.next_attempt_at = timezone.now()
        delivery.finished_at = None
        delivery.save(update_fields=["status", "attempts", "next_attempt_at", "finished_at"])
        enqueue("webhooks.tasks.webhook_deliver_task", delivery.pk)
    return delivery
