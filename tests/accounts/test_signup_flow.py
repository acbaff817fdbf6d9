"""The new-user path through real allauth views: sign up, verify by the emailed link, sign in,
create a key on the API keys page, call the API with it."""

from __future__ import annotations

import re
from typing import Any

from django.core import mail
from django.test import Client

from accounts.models import ApiKey, Membership, Organization, User
from accounts.roles import Role
from tests.support.personas import PASSWORD, Persona

LINK = re.compile(r"https?://[^\s]+/accounts/confirm-email/[^\s]+/")


def signup(client: Client, email: str) -> None:
    response = client.post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302, response.content
    assert response["Location"] == "/accounts/confirm-email/"


def confirm_from_email(client: Client, email: str) -> None:
    message = next(m for m in reversed(mail.outbox) if email in m.to)
    link = LINK.search(str(message.body))
    assert link, message.body
    path = link.group(0).split("://", 1)[1].split("/", 1)[1]
    assert client.get("/" + path).status_code == 200  # the confirm page; confirming is a POST
    response = client.post("/" + path)
    assert response.status_code == 302


def test_signup_verify_signin_key_and_api(db: None, catalog: None) -> None:
    client = Client()
    signup(client, "dana@example.com")
    user = User.objects.get(email="dana@example.com")
    assert Organization.objects.filter(memberships__user=user, is_personal=True).count() == 1

    # Not verified yet: signing in only re-sends verification.
    login = client.post("/accounts/login/", {"login": "dana@example.com", "password": PASSWORD})
    assert login.status_code == 302 and login["Location"] == "/accounts/confirm-email/"
    assert client.get("/dashboard/").status_code == 302

    confirm_from_email(client, "dana@example.com")
    client.logout()
    login = client.post("/accounts/login/", {"login": "dana@example.com", "password": PASSWORD})
    assert login.status_code == 302 and login["Location"] == "/dashboard/"
    assert client.get("/dashboard/").status_code == 200

    page = client.post("/api-keys/create", {"name": "laptop"}, follow=True)  # post/redirect/get (issue 14)
    assert page.status_code == 200
    match = re.search(r'value="(gpc_live_[0-9A-Za-z]+)"', page.content.decode())
    assert match, "the new key is shown once on the page"
    assert ApiKey.objects.get(name="laptop").created_by == user
    assert match.group(1) not in client.get("/api-keys/").content.decode()  # and never again

    me = Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {match.group(1)}")
    assert me.status_code == 200
    assert me.json()["user"]["email"] == "dana@example.com"
    assert me.json()["current_organization"]["role"] == Role.OWNER


def test_signup_with_an_existing_email_creates_nothing(alice: Persona) -> None:
    users_before, orgs_before = User.objects.count(), Organization.objects.count()
    client = Client()
    client.post("/accounts/signup/", {"email": "ALICE@example.com", "password1": PASSWORD, "password2": PASSWORD})
    assert User.objects.count() == users_before and Organization.objects.count() == orgs_before


def test_invitation_is_accepted_when_the_invitee_verifies(
    client: Client, alice: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(
            f"/api/v1/orgs/{alice.org.pk}/invitations",
            data={"email": "Erin@Example.com", "role": "admin"},
            content_type="application/json",
            **alice.auth,
        )
    assert response.status_code == 201
    assert len(callbacks) == 1  # the email task is enqueued only after the commit
    assert any("erin@example.com" in m.to and "Alice AI" in m.subject for m in mail.outbox)

    browser = Client()
    signup(browser, "erin@example.com")
    erin = User.objects.get(email="erin@example.com")
    assert not Membership.objects.filter(org=alice.org, user=erin).exists()  # unverified: not yet

    confirm_from_email(browser, "erin@example.com")
    membership = Membership.objects.get(org=alice.org, user=erin)
    assert membership.role == Role.ADMIN
    members = client.get(f"/api/v1/orgs/{alice.org.pk}/members", **alice.auth).json()
    assert {m["email"] for m in members} == {"alice@example.com", "erin@example.com"}


def test_password_reset_sends_a_link(client: Client, alice: Persona) -> None:
    response = client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    assert response.status_code == 302
    assert any("alice@example.com" in m.to and "/accounts/password/reset/key/" in m.body for m in mail.outbox)


def test_signup_is_rate_limited(db: None) -> None:
    client = Client()
    statuses = []
    for n in range(22):  # allauth's default: 20 sign-ups per minute per IP
        response = client.post(
            "/accounts/signup/", {"email": f"u{n}@example.com", "password1": PASSWORD, "password2": PASSWORD}
        )
        statuses.append(response.status_code)
        client.logout()
    assert statuses[:20] == [302] * 20
    assert statuses[-1] == 429
    assert User.objects.count() == 20
