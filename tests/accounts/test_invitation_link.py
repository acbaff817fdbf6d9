"""Issue 14 §3: an invitee opens the emailed link, signs up with the address filled in (the link
proves it: no second verification) and lands in the inviting org with a notice. The link works for
the invited address only; a forged, revoked or used link changes nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.core import mail
from django.test import Client

from accounts.auth import SESSION_ORG_KEY
from accounts.invitation_links import invitation_from_token
from accounts.models import Invitation, Membership, User
from accounts.roles import Role
from tests.support.pages import signed_in
from tests.support.personas import PASSWORD, Persona

pytestmark = pytest.mark.django_db
LINK = re.compile(r"https?://[^\s/]+(/invitations/[^\s/]+/)")


def invite(alice: Persona, email: str, capture: Any, role: str = "admin") -> str:
    """alice invites `email` from the organization page; the path of the emailed link."""
    with capture(execute=True):
        assert signed_in(alice).post("/organization/invite", {"email": email, "role": role}).status_code == 302
    body = str(next(m for m in mail.outbox if email in m.to).body)
    found = LINK.search(body)
    assert found, body
    return found.group(1)


def test_the_invitee_signs_up_from_the_link_and_lands_in_the_org(
    alice: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    link = invite(alice, "erin@example.com", django_capture_on_commit_callbacks)
    browser = Client()
    opened = browser.get(link)
    assert opened.status_code == 302 and opened["Location"] == "/accounts/signup/"
    form = browser.get("/accounts/signup/").content.decode()
    assert 'value="erin@example.com"' in form and "Create your account to join Alice AI" in form
    sent_before = len(mail.outbox)
    done = browser.post(
        "/accounts/signup/", {"email": "erin@example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert done.status_code == 302 and done["Location"] == "/dashboard/"  # signed in: no verification step
    assert len(mail.outbox) == sent_before  # no verification email: the link proved the address
    erin = User.objects.get(email="erin@example.com")
    assert Membership.objects.get(org=alice.org, user=erin).role == Role.ADMIN
    assert browser.session[SESSION_ORG_KEY] == alice.org.pk
    dashboard = browser.get("/dashboard/").content.decode()
    assert "Welcome to Alice AI: you joined as admin" in dashboard
    assert f'value="{alice.org.pk}" selected' in dashboard  # the org switcher shows Alice AI as current
    assert Invitation.objects.get(email="erin@example.com").accepted_at is not None
    again = browser.get(link)  # the invitee opening the used link again goes to the org
    assert again.status_code == 302 and again["Location"] == "/dashboard/"
    assert Client().get(link).status_code == 410  # anyone else: used, says so, changes nothing


def test_a_typed_over_address_is_not_verified_by_the_link(
    alice: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    """The link proves erin's address only: an account signed up from it with another address holds
    erin's address verified (allauth's stashed address) and the other one unverified."""
    link = invite(alice, "erin@example.com", django_capture_on_commit_callbacks)
    browser = Client()
    browser.get(link)
    browser.post("/accounts/signup/", {"email": "other@example.com", "password1": PASSWORD, "password2": PASSWORD})
    user = User.objects.get(emailaddress__email="other@example.com")
    addresses = dict(EmailAddress.objects.filter(user=user).values_list("email", "verified"))
    assert addresses == {"erin@example.com": True, "other@example.com": False}
    assert Membership.objects.get(org=alice.org, user=user).role == Role.ADMIN


def test_an_existing_user_signs_in_from_the_link_and_joins(
    alice: Persona, charlie: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    link = invite(alice, "charlie@example.com", django_capture_on_commit_callbacks, role="member")
    browser = Client()
    opened = browser.get(link)
    assert opened["Location"] == "/accounts/login/"
    assert "Sign in as charlie@example.com to join Alice AI." in browser.get("/accounts/login/").content.decode()
    done = browser.post("/accounts/login/", {"login": "charlie@example.com", "password": PASSWORD})
    assert done.status_code == 302
    assert Membership.objects.get(org=alice.org, user=charlie.user).role == Role.MEMBER
    assert browser.session[SESSION_ORG_KEY] == alice.org.pk


def test_signed_in_as_the_invitee_the_link_joins_at_once(
    alice: Persona, charlie: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    link = invite(alice, "charlie@example.com", django_capture_on_commit_callbacks)
    browser = signed_in(charlie)
    response = browser.get(link, follow=True)
    assert response.redirect_chain[-1][0] == "/dashboard/"
    assert "You joined Alice AI as admin and are working in it now." in response.content.decode()
    assert browser.session[SESSION_ORG_KEY] == alice.org.pk


def test_someone_elses_link_a_forged_or_revoked_link_changes_nothing(
    alice: Persona, charlie: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    link = invite(alice, "erin@example.com", django_capture_on_commit_callbacks)
    wrong_user = signed_in(charlie).get(link)
    assert wrong_user.status_code == 403
    assert (
        "This invitation is for erin@example.com; you are signed in as charlie@example.com."
        in wrong_user.content.decode()
    )
    assert not Membership.objects.filter(org=alice.org, user=charlie.user).exists()
    forged = Client().get("/invitations/" + link.split("/")[2][:-3] + "abc/")
    assert forged.status_code == 404 and "This invitation link is not valid" in forged.content.decode()
    invitation = Invitation.objects.get(email="erin@example.com")
    # The link names this invitation (its token carries the second it was signed: compared by what it
    # opens, not by text, which a token made a second later would not match).
    assert invitation_from_token(link.split("/")[2]) == invitation
    invitation.revoked_at = invitation.created_at
    invitation.save()
    browser = Client()
    revoked = browser.get(link)
    assert revoked.status_code == 410 and "was revoked" in revoked.content.decode()
    assert "account_verified_email" not in browser.session  # nothing stashed for a dead link
