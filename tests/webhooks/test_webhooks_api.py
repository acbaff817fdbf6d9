"""POST/GET/PATCH/DELETE /api/v1/deployments/{id}/webhooks: the secret is shown once; events, URL
and schedule are checked and a refusal saves nothing; internal addresses are refused at creation
and on change unless the operator allowed them; viewers read, members write, other orgs see 404."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from accounts.models import Membership
from accounts.roles import Role
from tests.support.pages import running
from tests.support.personas import Persona
from tests.support.webhooks import Receiver, subscribe
from webhooks.models import WebhookSubscription

pytestmark = pytest.mark.django_db


def patch(client: Client, persona: Persona, path: str, body: dict[str, Any]) -> Any:
    return client.patch(path, data=json.dumps(body), content_type="application/json", **persona.auth)


def test_create_shows_the_secret_once_then_list_get_change_delete(
    client: Client, alice: Persona, receiver: Receiver, catalog: None
) -> None:
    deployment = running(alice)
    created = subscribe(client, alice, deployment, url=receiver.url, events=["deployment.active", "deployment.scaled"])
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["id"].startswith("wh_")
    assert (body["events"], body["retry_schedule"], body["enabled"]) == (
        ["deployment.active", "deployment.scaled"], "standard", True)  # fmt: skip
    base = f"/api/v1/deployments/{deployment.pk}/webhooks"
    listed = client.get(base, **alice.auth).json()
    assert [w["id"] for w in listed] == [body["id"]] and "secret" not in listed[0]
    one = client.get(f"{base}/{body['id']}", **alice.auth).json()
    assert "secret" not in one and one["url"] == receiver.url

    changed = patch(client, alice, f"{base}/{body['id']}", {"events": ["deployment.failed"], "retry_schedule": "short"})
    assert changed.status_code == 200 and changed.json()["events"] == ["deployment.failed"]
    assert changed.json()["retry_schedule"] == "short" and changed.json()["url"] == receiver.url
    paused = patch(client, alice, f"{base}/{body['id']}", {"enabled": False}).json()
    assert paused["enabled"] is False and paused["disabled_reason"] == "Disabled by a user."
    resumed = patch(client, alice, f"{base}/{body['id']}", {"enabled": True}).json()
    assert resumed["enabled"] is True and resumed["disabled_reason"] is None

    assert client.delete(f"{base}/{body['id']}", **alice.auth).status_code == 204
    assert client.get(f"{base}/{body['id']}", **alice.auth).status_code == 404
    assert client.get(base, **alice.auth).json() == []


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"events": ["deployment.exploded"]}, "events", "Unknown event 'deployment.exploded'"),
        ({"events": []}, "events", "at least one event"),
        ({"retry_schedule": "forever"}, "retry_schedule", "standard, short"),
        ({"url": "ftp://example.com/x"}, "url", "https://"),
        ({"url": "https://169.254.169.254/latest/meta-data/"}, "url", "link-local"),
        ({"url": "https://10.0.0.5/hook"}, "url", "private network"),
        ({"url": "https://[::ffff:127.0.0.1]/hook"}, "url", "loopback"),
        ({"url": "https://localhost:8000/hook"}, "url", "loopback"),
        ({"url": "https://user:pw@example.com/hook"}, "url", "user name or password"),
        ({"url": "http://[::1/z"}, "url", "not a valid name or address"),  # urlsplit raises on these
        ({"url": "HTTP://[c234a:26a7]"}, "url", "not a valid name or address"),
    ],
)
def test_bad_subscriptions_are_refused_and_nothing_is_saved(
    client: Client, alice: Persona, catalog: None, body: dict[str, Any], param: str, says: str
) -> None:
    deployment = running(alice)
    full = {"url": "https://127.0.0.1:9/hook", "events": ["deployment.active"], **body}  # loopback: not allowed
    if param != "url":
        full["url"] = "https://93.184.215.14/hook"  # a public address: only the named field is wrong
    refused = subscribe(client, alice, deployment, **full)
    assert refused.status_code == 400, refused.content
    error = refused.json()["error"]
    assert error["param"] == param and says in error["message"], error
    assert not WebhookSubscription.objects.exists()


def test_http_is_refused_outside_debug_and_a_change_is_checked_like_a_creation(
    client: Client, alice: Persona, receiver: Receiver, catalog: None, settings: Any
) -> None:
    deployment = running(alice)
    webhook = subscribe(client, alice, deployment, url=receiver.url, events=["deployment.active"]).json()
    path = f"/api/v1/deployments/{deployment.pk}/webhooks/{webhook['id']}"
    settings.WEBHOOK_ALLOWED_HOSTS = []
    moved = patch(client, alice, path, {"url": "https://127.0.0.1:1/elsewhere", "events": ["deployment.failed"]})
    assert moved.status_code == 400 and "loopback" in moved.json()["error"]["message"]
    kept = WebhookSubscription.objects.get(pk=webhook["id"])
    assert (kept.url, kept.events) == (receiver.url, ["deployment.active"])  # nothing of the refusal saved
    malformed = patch(client, alice, path, {"url": "http://[::1/z"})
    assert malformed.status_code == 400 and malformed.json()["error"]["param"] == "url"
    plain = subscribe(client, alice, deployment, url="http://93.184.215.14/hook", events=["deployment.active"])
    assert plain.status_code == 400 and "https://" in plain.json()["error"]["message"]
    settings.DEBUG = True  # a developer's own machine: plain http to a public address is accepted
    assert subscribe(client, alice, deployment, url="http://93.184.215.14/hook",
                     events=["deployment.active"]).status_code == 201  # fmt: skip


def test_roles_and_tenants(client: Client, alice: Persona, bob: Persona, charlie: Persona, receiver: Receiver,
                           catalog: None) -> None:  # fmt: skip
    deployment = running(alice)
    webhook = subscribe(client, alice, deployment, url=receiver.url, events=["deployment.active"]).json()
    base = f"/api/v1/deployments/{deployment.pk}/webhooks"
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    assert client.get(base, **bob.auth).status_code == 200  # viewers read
    assert subscribe(client, bob, deployment, url=receiver.url, events=["deployment.active"]).status_code == 403
    assert client.delete(f"{base}/{webhook['id']}", **bob.auth).status_code == 403
    assert client.get(base, **charlie.auth).status_code == 404  # another tenant's deployment does not exist
    assert client.get(f"{base}/{webhook['id']}", **charlie.auth).status_code == 404
    assert client.delete(f"{base}/{webhook['id']}", **charlie.auth).status_code == 404
    theirs = running(charlie, "theirs")
    foreign = f"/api/v1/deployments/{theirs.pk}/webhooks/{webhook['id']}"
    assert client.get(foreign, **charlie.auth).status_code == 404  # a webhook belongs to its own deployment
    assert WebhookSubscription.objects.filter(pk=webhook["id"]).exists()


def test_a_deployment_has_at_most_ten_webhooks(client: Client, alice: Persona, receiver: Receiver,
                                               catalog: None) -> None:  # fmt: skip
    deployment = running(alice)
    for _ in range(10):
        assert subscribe(client, alice, deployment, url=receiver.url, events=["deployment.active"]).status_code == 201
    eleventh = subscribe(client, alice, deployment, url=receiver.url, events=["deployment.active"])
    assert eleventh.status_code == 409 and "at most 10" in eleventh.json()["error"]["message"]
    assert WebhookSubscription.objects.count() == 10


def test_the_event_types_are_listed(client: Client, alice: Persona) -> None:
    types = [t["type"] for t in client.get("/api/v1/webhook-event-types", **alice.auth).json()]
    assert types == ["deployment.active", "deployment.degraded", "deployment.recovered", "deployment.sla_breach",
                     "deployment.scaled", "deployment.preempted", "deployment.failed", "deployment.stopped",
                     "balance.low", "autorefill.failed", "pod.running", "pod.stopped", "pod.preempted",
                     "pod.failed"]  # fmt: skip
