"""Scoped keys and grants from the pages: a scoped key is made on the API keys page (marked as
such), granted a deployment from the deployment page's Access section and revoked there; members
see the grants without the forms and cannot grant; other orgs get 404."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.auth import SESSION_ORG_KEY
from accounts.models import ApiKey, KeyGrant
from tests.support.pages import running, signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


def working_in(persona: Persona, org_id: str) -> Client:
    browser = Client()
    browser.force_login(persona.user)
    session = browser.session
    session[SESSION_ORG_KEY] = org_id
    session.save()
    return browser


def test_make_a_scoped_key_grant_it_and_revoke_it_from_the_pages(alice: Persona, bob: Persona, charlie: Persona,
                                                                  catalog: None) -> None:  # fmt: skip
    browser = signed_in(alice)
    made = browser.post("/api-keys/create", {"name": "acme customer", "scoped": "on"}, follow=True)
    assert made.status_code == 200 and made.redirect_chain == [("/api-keys/", 302)]  # post/redirect/get
    key = ApiKey.objects.get(name="acme customer")
    assert key.scoped and key.deployment_id is None
    assert 'acme customer <span class="badge">Scoped</span>' in browser.get("/api-keys/").content.decode()
    deployment = running(alice)
    page = f"/deployments/{deployment.pk}/"
    html = browser.get(page).content.decode()
    assert "No scoped key is granted this deployment." in html and f'<option value="{key.pk}">' in html

    granted = browser.post(f"{page}access", {"key_id": key.pk})
    assert granted.status_code == 302 and granted["Location"] == f"{page}#access-h"
    assert KeyGrant.objects.filter(key=key, deployment=deployment).exists()
    html = browser.get(page).content.decode()
    assert key.masked in html and f'<option value="{key.pk}">' not in html  # granted: no longer offered

    member = working_in(bob, alice.org.pk)
    seen = member.get(page).content.decode()
    assert key.masked in seen and "Grant inference" not in seen and "Revoke</button>" not in seen
    assert member.post(f"{page}access/{key.pk}/revoke").status_code == 403
    assert signed_in(charlie).post(f"{page}access", {"key_id": key.pk}).status_code == 404

    revoked = browser.post(f"{page}access/{key.pk}/revoke")
    assert revoked.status_code == 302 and not KeyGrant.objects.exists()


def test_a_grant_the_rules_refuse_is_shown_on_the_page(alice: Persona, catalog: None) -> None:
    browser = signed_in(alice)
    deployment = running(alice)
    unscoped = ApiKey.objects.get(org=alice.org, name="default")
    refused = browser.post(f"/deployments/{deployment.pk}/access", {"key_id": unscoped.pk})
    assert refused.status_code == 409 and "unscoped account key" in refused.content.decode()
    assert not KeyGrant.objects.exists()
