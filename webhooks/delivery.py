"""One attempt at one delivery, safe to run twice and from several workers.

An attempt first claims the delivery (moving its next attempt a lease ahead, under a row lock), then
POSTs outside any transaction, then records what happened unless a redelivery reset it meanwhile.
A worker that dies mid-attempt leaves the claim to expire and the attempt is made again: receivers
get each event at least once and drop repeats by `webhook-id`.
"""

from __future__ import annotations

import binascii
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webhooks import guard, schedule
from webhooks.events import payload
from webhooks.models import DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookSubscription
from webhooks.signing import signature_headers

logger = logging.getLogger(__name__)

CLAIM_LEASE = timedelta(minutes=2)  # longer than an attempt's timeout
USER_AGENT = "gpucloud-webhooks/1"


@dataclass(frozen=True)
class Outcome:
    response_code: int | None
    latency_ms: int
    error: str

    @property
    def succeeded(self) -> bool:
        return self.response_code is not None and 200 <= self.response_code < 300


def delivery_attempt(
    delivery_id: str, *, now: datetime | None = None, transport: httpx.BaseTransport | None = None
) -> WebhookDelivery | None:
    """Make the delivery's next attempt if it is due; returns the delivery as recorded, or None when
    there was nothing to do (not due, finished, claimed by another worker)."""
    now = now or timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("subscription", "event")
            .filter(pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .first()
        )
        if delivery is None:
            return None
        if not delivery.subscription.enabled:
            _finish(delivery, DeliveryStatus.FAILED, now, error="The subscription is disabled.")
            return delivery
        delivery.attempts += 1
        delivery.next_attempt_at = now + CLAIM_LEASE
        delivery.save(update_fields=["attempts", "next_attempt_at"])
    number = delivery.attempts
    outcome = send(delivery, transport=transport)
    return _record(delivery.pk, number, outcome, at=now)


def send(delivery: WebhookDelivery, *, transport: httpx.BaseTransport | None = None) -> Outcome:
    """POST the event, signed with the subscription's secret, to its URL (checked again now)."""
    body = json.dumps(payload(delivery.event), separators=(",", ":")).encode()
    started = time.monotonic()
    try:
        signed = signature_headers(
            secret=delivery.subscription.secret, message_id=delivery.event.pk, timestamp=int(time.time()), body=body
        )
    except (ValueError, binascii.Error):  # a secret not of our making (set by hand): nothing unsigned leaves
        return Outcome(None, 0, "The subscription's signing secret is not a whsec_ secret; recreate the webhook.")
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **signed}
    try:
        response = guard.post(
            delivery.subscription.url, content=body, headers=headers, timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
            allow_http=settings.DEBUG, allowed_hosts=settings.WEBHOOK_ALLOWED_HOSTS, transport=transport,
        )  # fmt: skip
    except guard.UnsafeDestination as exc:
        return Outcome(None, _since(started), str(exc))
    except httpx.TimeoutException:
        return Outcome(None, _since(started), f"No answer within {settings.WEBHOOK_TIMEOUT_SECONDS:g} s.")
    except httpx.HTTPError as exc:
        return Outcome(None, _since(started), f"Could not connect: {exc}" if str(exc) else type(exc).__name__)
    error = ""
    if 300 <= response.status_code < 400:
        error = "The receiver redirected; redirects are not followed (use the final URL)."
    elif not 200 <= response.status_code < 300:
        error = f"The receiver answered {response.status_code}."
    return Outcome(response.status_code, _since(started), error)


def _since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _record(delivery_id: str, number: int, outcome: Outcome, *, at: datetime) -> WebhookDelivery | None:
    now = timezone.now()
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("subscription")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return None  # the subscription was deleted meanwhile
        if delivery.status != DeliveryStatus.PENDING or delivery.attempts != number:
            return delivery  # redelivered (or finished) while this attempt was in flight: it no longer counts
        WebhookAttempt.objects.create(
            delivery=delivery, number=number, at=at, response_code=outcome.response_code,
            latency_ms=outcome.latency_ms, error=outcome.error[:300], succeeded=outcome.succeeded,
        )  # fmt: skip
        delivery.last_response_code = outcome.response_code
        delivery.last_error = outcome.error[:300]
        if outcome.succeeded:
            _finish(delivery, DeliveryStatus.SUCCEEDED, now)
        elif outcome.response_code == 410:  # Gone: the receiver asks us to stop
            _finish(delivery, DeliveryStatus.FAILED, now)
            subscription_disable(delivery.subscription, "The receiver answered 410 Gone.", now=now)
        else:
            delay = schedule.delay_after(delivery.subscription.retry_schedule, number)
            if delay is None:
                _finish(delivery, DeliveryStatus.FAILED, now)
            else:
                delivery.next_attempt_at = now + delay
                delivery.save(update_fields=["last_response_code", "last_error", "next_attempt_at"])
    return delivery


def _finish(delivery: WebhookDelivery, status: DeliveryStatus, now: datetime, *, error: str | None = None) -> None:
    delivery.status = status
    delivery.finished_at = now
    delivery.next_attempt_at = None
    if error is not None:
        delivery.last_error = error
    delivery.save(update_fields=["status", "finished_at", "next_attempt_at", "last_response_code", "last_error"])


def subscription_disable(subscription: WebhookSubscription, reason: str, *, now: datetime) -> None:
    """Stop delivering to it: its pending deliveries end as failed (redeliver them once it is fixed)."""
    subscription.enabled = False
    subscription.disabled_reason = reason[:300]
    subscription.save(update_fields=["enabled", "disabled_reason"])
    subscription.deliveries.filter(status=DeliveryStatus.PENDING).update(
        status=DeliveryStatus.FAILED, finished_at=now, next_attempt_at=None, last_error="The subscription is disabled."
    )


def deliveries_due(*, now: datetime | None = None, limit: int = 200) -> list[str]:
    """Pending deliveries whose attempt is due (a failure's retry, or a claim that expired)."""
    due = WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now or timezone.now())
    return list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
