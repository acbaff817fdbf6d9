"""Issue 14 §3: a signed-out visitor at / gets a landing page; the account pages are in the site's
layout and linked from the header; a favicon is served from a vendored file; no page form's address
answers a reload (a GET) with an error."""

from __future__ import annotations

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from accounts.models import ApiKey
from deployments.models import Deployment
from tests.support.pages import running, signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


def test_a_signed_out_visitor_gets_the_landing_page_with_the_catalogs_prices(catalog: None) -> None:
    response = Client().get("/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "Deploy AI models in one click" in page and "OpenAI-compatible API" in page
    assert 'href="/accounts/signup/">Sign up</a>' in page and 'href="/accounts/login/">Sign in</a>' in page
    # every catalog model with where it runs now: the CPU one priced, a GPU one saying what it needs
    row = page[page.index("SmolLM2 135M Instruct") :]
    assert "<td>CPU (this machine)</td>" in row[:400] and "$0.05" in row[:400]
    assert "Large language model · 135M" in row[:200]
    llama = page[page.index("Llama 3.3 70B Instruct") :]
    assert "needs a GPU provider" in llama[:400] and "$" not in llama[:400]


def test_a_signed_in_user_at_the_root_goes_to_the_dashboard(alice: Persona) -> None:
    response = signed_in(alice).get("/")
    assert response.status_code == 302 and response["Location"] == "/dashboard/"


def test_the_header_links_the_account_pages_which_use_the_sites_layout(alice: Persona, catalog: None) -> None:
    client = signed_in(alice)
    dashboard = client.get("/dashboard/").content.decode()
    assert 'href="/accounts/email/"' in dashboard and ">Account<" in dashboard
    for path, heading in (("/accounts/email/", "Email Addresses"), ("/accounts/password/change/", "Change Password")):
        page = client.get(path).content.decode()
        assert heading in page, path
        assert 'class="topbar"' in page and 'href="/static/css/app.css"' in page  # the site's header and styles
        assert 'aria-label="Account"' in page and 'aria-current="page"' in page  # the account menu


def test_the_favicon_is_a_vendored_file_linked_from_every_page(catalog: None) -> None:
    page = Client().get("/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
    assert '<link rel="icon" href="/static/favicon.ico" sizes="32x32">' in page
    icon = finders.find("favicon.ico")
    assert icon is not None
    with open(icon, "rb") as file:
        assert file.read(4) == b"\0\0\1\0"  # an ICO header
    assert finders.find("favicon.svg") is not None
    well_known = Client().get("/favicon.ico")
    assert well_known.status_code == 302 and well_known["Location"] == "/static/favicon.ico"


@pytest.mark.parametrize(
    ("path", "lands"),
    [
        ("/api-keys/create", "/api-keys/"),
        ("/api-keys/key_x/revoke", "/api-keys/"),
        ("/api-keys/key_x/regenerate", "/api-keys/"),
        ("/organization/invite", "/organization/"),
        ("/organization/create", "/organization/"),
        ("/organization/switch", "/organization/"),
        ("/organization/members/1/role", "/organization/"),
        ("/organization/members/1/remove", "/organization/"),
        ("/organization/invitations/inv_x/revoke", "/organization/"),
        ("/catalog/smollm2-135m-instruct/deploy", "/catalog/smollm2-135m-instruct/#deploy-h"),
        ("/billing/add-funds", "/billing/"),
        ("/billing/save-card", "/billing/"),
        ("/billing/auto-refill", "/billing/"),
        ("/billing/spend-limit", "/billing/"),
    ],
)
def test_a_form_address_opened_with_get_goes_to_its_page(alice: Persona, catalog: None, path: str, lands: str) -> None:
    response = signed_in(alice).get(path)
    assert response.status_code == 302 and response["Location"] == lands


def test_the_deployment_forms_addresses_go_to_their_section(alice: Persona, catalog: None) -> None:
    deployment: Deployment = running(alice)
    client = signed_in(alice)
    for suffix, anchor in (("key", "#key-h"), ("scaling", "#scaling-h"), ("sla", "#scaling-h"),
                           ("preset", "#scaling-h"), ("access", "#access-h"), ("webhooks", "#webhooks-h"),
                           ("access/key_x/revoke", "#access-h"), ("webhooks/wh_x/test", "#webhooks-h"),
                           ("webhooks/wh_x/delete", "#webhooks-h")):  # fmt: skip
        response = client.get(f"/deployments/{deployment.pk}/{suffix}")
        assert response.status_code == 302, suffix
        assert response["Location"] == f"/deployments/{deployment.pk}/{anchor}", suffix
        assert client.get(response["Location"]).status_code == 200
    assert not ApiKey.objects.filter(deployment=deployment).exists()  # a GET created nothing


def test_making_a_deployment_key_redirects_so_a_reload_posts_nothing(alice: Persona, catalog: None) -> None:
    first, second = running(alice, "first"), running(alice, "second")
    client = signed_in(alice)
    made = client.post(f"/deployments/{first.pk}/key")
    assert made.status_code == 302 and made["Location"] == f"/deployments/{first.pk}/#key-h"
    assert 'id="new-key"' not in client.get(f"/deployments/{second.pk}/").content.decode()  # not another's page
    shown = client.get(made["Location"]).content.decode()
    assert 'id="new-key">gpc_dep_' in shown
    reloaded = client.get(made["Location"]).content.decode()  # what a reload does now: a GET
    assert 'id="new-key"' not in reloaded and "deployment_new_key" not in client.session
    assert ApiKey.objects.filter(deployment=first).count() == 1


def test_an_account_key_shows_once_after_a_plain_post_and_in_place_with_htmx(alice: Persona) -> None:
    client = signed_in(alice)
    plain = client.post("/api-keys/create", {"name": "laptop"})
    assert plain.status_code == 302 and plain["Location"] == "/api-keys/"
    assert 'id="new-key"' in client.get("/api-keys/").content.decode()
    assert 'id="new-key"' not in client.get("/api-keys/").content.decode()  # a reload: shown once
    swapped = client.post("/api-keys/create", {"name": "ci"}, HTTP_HX_REQUEST="true")
    assert swapped.status_code == 200 and 'id="new-key"' in swapped.content.decode()
    assert "<html" not in swapped.content.decode()  # the partial, swapped in; the address stays /api-keys/
    key = ApiKey.objects.get(name="laptop")
    revoked = client.post(f"/api-keys/{key.pk}/revoke")
    assert revoked.status_code == 302 and revoked["Location"] == "/api-keys/"
    key.refresh_from_db()
    assert key.revoked_at is not None
