"""The deployment page's webhooks: added with the secret shown once, refused inline with what was
typed, tested and deleted from the page; viewers see them without the forms; another org's
webhook cannot be touched through the page."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.auth import SESSION_ORG_KEY
from accounts.models import Membership
from accounts.roles import Role
from tests.support.pages import running, signed_in
from tests.support.personas import Persona
from tests.support.webhooks import Receiver
from webhooks.models import WebhookSubscription

pytestmark = pytest.mark.django_db


def test_add_test_and_delete_a_webhook_from_the_deployment_page(alice: Persona, receiver: Receiver,
                                                                catalog: None) -> None:  # fmt: skip
    browser = signed_in(alice)
    deployment = running(alice)
    page = f"/deployments/{deployment.pk}/"
    assert "No webhooks." in browser.get(page).content.decode()
    added = browser.post(f"{page}webhooks", {"url": receiver.url, "events": ["deployment.active", "deployment.scaled"],
                                             "retry_schedule": "short"})  # fmt: skip
    assert added.status_code == 200
    subscription = WebhookSubscription.objects.get()
    html = added.content.decode()
    assert subscription.secret in html and "shown once" in html
    assert (subscription.events, subscription.retry_schedule) == (["deployment.active", "deployment.scaled"], "short")
    assert subscription.secret not in browser.get(page).content.decode()  # once only

    tested = browser.post(f"{page}webhooks/{subscription.pk}/test").content.decode()
    assert f"Test event delivered to {receiver.url}: 200." in tested
    assert "webhook.test: succeeded (200)" in tested and len(receiver.requests) == 1

    deleted = browser.post(f"{page}webhooks/{subscription.pk}/delete")
    assert deleted.status_code == 302 and deleted["Location"] == f"{page}#webhooks-h"
    assert not WebhookSubscription.objects.exists()


def test_a_refusal_is_shown_inline_with_what_was_typed(alice: Persona, catalog: None, settings: Any) -> None:
    browser = signed_in(alice)
    deployment = running(alice)
    refused = browser.post(f"/deployments/{deployment.pk}/webhooks",
                           {"url": "https://10.1.2.3/hook", "events": ["deployment.failed"]})  # fmt: skip
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "private network address" in html and 'value="https://10.1.2.3/hook"' in html
    assert 'value="deployment.failed" checked' in html
    assert not WebhookSubscription.objects.exists()


def test_viewers_see_webhooks_without_the_forms_and_other_orgs_cannot_touch_them(
    alice: Persona, bob: Persona, charlie: Persona, receiver: Receiver, catalog: None
) -> None:
    deployment = running(alice)
    subscription = WebhookSubscription.objects.create(org=alice.org, deployment=deployment, url=receiver.url,
                                                      events=["deployment.failed"])  # fmt: skip
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    viewer = Client()
    viewer.force_login(bob.user)
    session = viewer.session

    session[SESSION_ORG_KEY] = alice.org.pk
    session.save()
    html = viewer.get(f"/deployments/{deployment.pk}/").content.decode()
    assert receiver.url in html and "Add webhook" not in html and "Send test" not in html
    assert viewer.post(f"/deployments/{deployment.pk}/webhooks/{subscription.pk}/delete").status_code == 403
    outsider = signed_in(charlie)
    assert outsider.post(f"/deployments/{deployment.pk}/webhooks/{subscription.pk}/delete").status_code == 404
    assert WebhookSubscription.objects.filter(pk=subscription.pk).exists()
