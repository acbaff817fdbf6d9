"""Deliveries to a real receiver on loopback: signed so that the standardwebhooks library and the
reference's verifier accept them; retried on the schedule (standard spans more than a day, short is
5 attempts within 10 minutes) with every attempt logged; 410 disables the subscription; redirects
are not followed; redelivery sends the same event again; an address that turned internal is
refused at delivery time; running an attempt twice makes one."""

from __future__ import annotations

import itertools
import json
import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from deployments.lifecycle import deployment_transition
from deployments.models import Deployment, DeploymentStatus
from tests.support.pages import running
from tests.support.personas import Persona
from tests.support.webhooks import Receiver, reference_verify, subscribe
from webhooks import schedule
from webhooks.delivery import deliveries_due, delivery_attempt
from webhooks.events import event_emit
from webhooks.models import DeliveryStatus, RetrySchedule, WebhookDelivery, WebhookEvent, WebhookSubscription

pytestmark = pytest.mark.django_db


def due(delivery: WebhookDelivery) -> datetime:
    assert delivery.next_attempt_at is not None
    return delivery.next_attempt_at


def degrade(deployment: Deployment) -> None:
    deployment_transition(deployment, DeploymentStatus.DEGRADED, "Replica lost.")


def test_an_event_reaches_the_receiver_signed_for_both_verifiers(
    client: Client, alice: Persona, receiver: Receiver, catalog: None, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = running(alice)
    secret = subscribe(client, alice, deployment, url=receiver.url, events=["deployment.degraded"]).json()["secret"]
    with django_capture_on_commit_callbacks(execute=True):
        degrade(deployment)
    (request,) = receiver.requests
    payload = Webhook(secret).verify(request.body, request.headers)  # raises unless signed right
    assert reference_verify(request.body, request.headers["x-signature"], secret)
    assert request.headers["content-type"] == "application/json"
    assert payload["type"] == "deployment.degraded" and payload["id"] == request.headers["webhook-id"]
    assert payload["data"]["deployment_id"] == deployment.pk and payload["data"]["reason"] == "Replica lost."
    assert payload["data"]["previous_status"] == "active" and payload["data"]["status"] == "degraded"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == (DeliveryStatus.SUCCEEDED, 1, 200)
    (attempt,) = delivery.attempt_log.all()
    assert attempt.succeeded and attempt.response_code == 200 and attempt.latency_ms is not None


def test_failures_follow_the_schedule_and_every_attempt_is_logged(
    client: Client, alice: Persona, receiver: Receiver, catalog: None, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = running(alice)
    webhook = subscribe(client, alice, deployment, url=receiver.url, events=["deployment.degraded"]).json()
    receiver.statuses = [500, 503]
    with django_capture_on_commit_callbacks(execute=True):
        degrade(deployment)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == ("pending", 1, 500)
    assert delivery_attempt(delivery.pk) is None  # not due yet: nothing sent
    assert len(receiver.requests) == 1
    wait = due(delivery) - timezone.now()
    assert timedelta(seconds=3) < wait <= timedelta(seconds=5)  # the first retry: 5 s less jitter
    later = due(delivery) + timedelta(seconds=1)
    assert deliveries_due(now=later) == [delivery.pk]
    delivery_attempt(delivery.pk, now=later)
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_response_code) == (2, 503)
    assert timedelta(minutes=3) < due(delivery) - timezone.now() <= timedelta(minutes=5)
    delivery_attempt(delivery.pk, now=due(delivery))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    ids = {r.headers["webhook-id"] for r in receiver.requests}
    assert len(receiver.requests) == 3 and len(ids) == 1  # the same event id on every attempt: receivers dedupe

    log = client.get(f"/api/v1/deployments/{deployment.pk}/webhooks/{webhook['id']}/deliveries", **alice.auth).json()
    (entry,) = log
    assert entry["status"] == "succeeded" and entry["event_type"] == "deployment.degraded"
    assert [(a["number"], a["response_code"], a["succeeded"]) for a in entry["attempt_log"]] == [
        (1, 500, False), (2, 503, False), (3, 200, True)]  # fmt: skip
    assert all(a["latency_ms"] is not None for a in entry["attempt_log"])
    assert entry["attempt_log"][0]["error"] == "The receiver answered 500."


def test_the_schedules_span_a_day_or_ten_minutes_whatever_the_jitter() -> None:
    for seed in range(50):
        rng = random.Random(seed)  # noqa: S311 (repeatable jitter)
        standard = [schedule.delay_after(RetrySchedule.STANDARD, n, rng=rng) for n in range(1, 9)]
        assert standard[-1] is None
        waits = [d for d in standard if d is not None]
        assert len(waits) == 7 and timedelta(days=1) < sum(waits, timedelta()) < timedelta(hours=32)
        short = [schedule.delay_after(RetrySchedule.SHORT, n, rng=rng) for n in range(1, 6)]
        assert short[-1] is None
        short_waits = [d for d in short if d is not None]
        assert len(short_waits) == 4 and sum(short_waits, timedelta()) <= timedelta(minutes=10)
        assert all(a < b for a, b in itertools.pairwise(short_waits))  # increasing: backoff
    assert (schedule.attempts_allowed(RetrySchedule.STANDARD), schedule.attempts_allowed(RetrySchedule.SHORT)) == (8, 5)


def test_the_short_schedule_gives_up_after_five_attempts(
    client: Client, alice: Persona, receiver: Receiver, catalog: None, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = running(alice)
    subscribe(client, alice, deployment, url=receiver.url, events=["deployment.degraded"], retry_schedule="short")
    receiver.statuses = [500] * 10
    with django_capture_on_commit_callbacks(execute=True):
        degrade(deployment)
    delivery = WebhookDelivery.objects.get()
    started = timezone.now()
    while delivery.status == DeliveryStatus.PENDING:
        delivery_attempt(delivery.pk, now=due(delivery))
        delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, len(receiver.requests)) == ("failed", 5, 5)
    last = delivery.attempt_log.order_by("-at").first()
    assert delivery.attempt_log.count() == 5 and last is not None and last.at - started <= timedelta(minutes=10)


def test_410_disables_the_subscription_and_redelivery_sends_the_same_event(
    client: Client, alice: Persona, receiver: Receiver, catalog: None, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = running(alice)
    webhook = subscribe(client, alice, deployment, url=receiver.url,
                        events=["deployment.degraded", "deployment.recovered"]).json()  # fmt: skip
    base = f"/api/v1/deployments/{deployment.pk}/webhooks/{webhook['id']}"
    receiver.statuses = [410]
    with django_capture_on_commit_callbacks(execute=True):
        degrade(deployment)
    subscription = WebhookSubscription.objects.get()
    assert not subscription.enabled and "410" in subscription.disabled_reason
    with django_capture_on_commit_callbacks(execute=True):
        deployment_transition(deployment, DeploymentStatus.ACTIVE, "Healthy again.")
    assert len(receiver.requests) == 1  # nothing more goes to a receiver that said Gone
    shown = client.get(base, **alice.auth).json()
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]

    delivery = WebhookDelivery.objects.get()
    redeliver = f"{base}/deliveries/{delivery.pk}/redeliver"
    refused = client.post(redeliver, **alice.auth)
    assert refused.status_code == 409 and "enable it" in refused.json()["error"]["message"]
    client.patch(base, data=json.dumps({"enabled": True}), content_type="application/json", **alice.auth)
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post(redeliver, **alice.auth)
    assert again.status_code == 200
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert receiver.requests[0].headers["webhook-id"] == receiver.requests[1].headers["webhook-id"]
    assert json.loads(receiver.requests[1].body)["type"] == "deployment.degraded"
    assert client.post(f"{base}/deliveries/whd_nope/redeliver", **alice.auth).status_code == 404


def test_redirects_are_not_followed(
    client: Client, alice: Persona, receiver: Receiver, catalog: None, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = running(alice)
    subscribe(client, alice, deployment, url=receiver.url, events=["deployment.degraded"])
    receiver.statuses = [302]
    receiver.redirect_to = "http://169.254.169.254/latest/meta-data/"
    with django_capture_on_commit_callbacks(execute=True):
        degrade(deployment)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_response_code) == ("pending", 302)  # a failure, retried later
    assert "redirects are not followed" in delivery.last_error
    assert len(receiver.requests) == 1


def test_an_address_refused_at_delivery_time_is_never_contacted(
    client: Client, alice: Persona, receiver: Receiver, catalog: None, settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    deployment = running(alice)
    subscribe(client, alice, deployment, url=receiver.url, events=["deployment.degraded"])
    settings.WEBHOOK_ALLOWED_HOSTS = []  # the operator withdrew the exception (or DNS now answers loopback)
    settings.DEBUG = True  # http itself is fine: the address is what is refused
    with django_capture_on_commit_callbacks(execute=True):
        degrade(deployment)
    delivery = WebhookDelivery.objects.get()
    assert receiver.requests == []
    assert delivery.last_response_code is None and "loopback" in delivery.last_error


def test_an_attempt_run_twice_is_made_once_and_an_event_fired_twice_is_recorded_once(
    client: Client, alice: Persona, receiver: Receiver, catalog: None
) -> None:
    deployment = running(alice)
    subscribe(client, alice, deployment, url=receiver.url, events=["deployment.degraded"])

    def fire() -> WebhookEvent | None:
        return event_emit(org_id=alice.org.pk, deployment_id=deployment.pk, event_type="deployment.degraded",
                          data={"deployment_id": deployment.pk}, dedupe_key="degraded:once")  # fmt: skip

    first, second = fire(), fire()
    assert first is not None and second is not None and first.pk == second.pk
    assert WebhookEvent.objects.count() == 1 and WebhookDelivery.objects.count() == 1
    delivery = WebhookDelivery.objects.get()
    delivery_attempt(delivery.pk)
    delivery_attempt(delivery.pk)  # a duplicate task, or the dispatcher racing the first one
    assert len(receiver.requests) == 1 and delivery.attempt_log.count() == 1


def test_the_test_endpoint_sends_a_test_event_now(
    client: Client, alice: Persona, receiver: Receiver, catalog: None
) -> None:
    deployment = running(alice)
    webhook = subscribe(client, alice, deployment, url=receiver.url, events=["deployment.active"]).json()
    sent = client.post(f"/api/v1/deployments/{deployment.pk}/webhooks/{webhook['id']}/test", **alice.auth)
    assert sent.status_code == 200, sent.content
    body = sent.json()
    assert body["status"] == "succeeded" and body["event_type"] == "webhook.test"
    assert body["attempt_log"][0]["response_code"] == 200
    payload = Webhook(webhook["secret"]).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert payload["type"] == "webhook.test" and payload["data"]["webhook_id"] == webhook["id"]


def test_a_secret_not_of_our_making_sends_nothing_unsigned(
    client: Client, alice: Persona, receiver: Receiver, catalog: None, django_capture_on_commit_callbacks: Any
) -> None:
    deployment = running(alice)
    subscribe(client, alice, deployment, url=receiver.url, events=["deployment.degraded"])
    WebhookSubscription.objects.update(secret="typed-in-the-admin")
    with django_capture_on_commit_callbacks(execute=True):
        degrade(deployment)
    delivery = WebhookDelivery.objects.get()
    assert receiver.requests == [] and "not a whsec_ secret" in delivery.last_error
    assert WebhookSubscription(org=alice.org, deployment=deployment, url=receiver.url).secret.startswith("whsec_")
