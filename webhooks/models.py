"""Webhook subscriptions, the events they receive and each delivery's attempts.

An event is written once (its `dedupe_key` makes firing it twice harmless); each subscription that
wants it gets one delivery, attempted until the receiver answers 2xx or the schedule runs out. The
event's id is the `webhook-id` every attempt carries, so receivers can drop repeats."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from gpucloud.core.ids import new_id
from webhooks.signing import secret_generate


def new_webhook_id() -> str:
    return new_id("wh")


def new_event_id() -> str:
    return new_id("msg")


def new_delivery_id() -> str:
    return new_id("whd")


class RetrySchedule(models.TextChoices):
    # Attempts spread over a day and a half: a receiver down for hours still gets every event.
    STANDARD = "standard", "Standard (8 attempts over about 27 hours)"
    # reference/000's schedule: for receivers that would rather lose an event than get it late.
    SHORT = "short", "Short (5 attempts over 10 minutes)"


class WebhookSubscription(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_webhook_id, editable=False)
    org = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="webhooks")
    deployment = models.ForeignKey("deployments.Deployment", on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text="Event types delivered to this URL")
    # Needed in the clear to sign each delivery; shown to the user once, at creation.
    secret = models.CharField(max_length=80, default=secret_generate)
    retry_schedule = models.CharField(max_length=12, choices=RetrySchedule.choices, default=RetrySchedule.STANDARD)
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["org", "enabled"])]

    def __str__(self) -> str:
        return f"{self.pk} → {self.url}"


class WebhookEvent(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_event_id, editable=False)
    org = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="webhook_events")
    deployment = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_events"
    )
    type = models.CharField(max_length=40)
    data = models.JSONField(default=dict)
    dedupe_key = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.pk} {self.type}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # an attempt is due at next_attempt_at
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the schedule ran out, the receiver answered 410, or the subscription was disabled


class WebhookDelivery(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_delivery_id, editable=False)
    subscription = models.ForeignKey(WebhookSubscription, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts made since the last (re)delivery")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_response_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subscription", "event"], name="one_delivery_per_event")]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["subscription", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.pk} {self.status}"


class WebhookAttempt(models.Model):
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["delivery", "at"])]
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number} {self.response_code or self.error}"
