"""Failed sign-ins are throttled per client address and account, so guessing is slow but nobody can
lock the owner out by typing wrong passwords from elsewhere (issue 15 §10)."""

from __future__ import annotations

import re

from django.core import mail
from django.test import Client

from tests.support.personas import PASSWORD, Persona

ATTACKER = "203.0.113.7"
OWNER = "198.51.100.20"
RESET_LINK = re.compile(r"https?://[^/\s]+(/accounts/password/reset/key/[^\s]+/)")


def sign_in(address: str, password: str, email: str = "alice@example.com") -> int:
    client = Client(REMOTE_ADDR=address)
    return client.post("/accounts/login/", {"login": email, "password": password}).status_code


def test_wrong_passwords_elsewhere_do_not_lock_the_owner_out(alice: Persona) -> None:
    for _ in range(8):
        assert sign_in(ATTACKER, "wrong-password-123") == 200  # the form again, with its error
    assert sign_in(OWNER, PASSWORD) == 302


def test_the_guessing_address_is_stopped_even_with_the_right_password(alice: Persona) -> None:
    for _ in range(5):
        assert sign_in(ATTACKER, "wrong-password-123") == 200
    client = Client(REMOTE_ADDR=ATTACKER)
    response = client.post("/accounts/login/", {"login": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_an_account_guessed_from_many_addresses_is_throttled(alice: Persona) -> None:
    """A distributed guess is bounded per account too, with a threshold one address cannot reach."""
    failures = 0
    for n in range(40):
        client = Client(REMOTE_ADDR=f"192.0.2.{n + 1}")
        response = client.post("/accounts/login/", {"login": "alice@example.com", "password": "wrong-pass-1"})
        if b"Too many failed login attempts" in response.content:
            break
        failures += 1
    assert failures == 30


def test_a_password_reset_lifts_the_account_limit(alice: Persona) -> None:
    for n in range(30):
        sign_in(f"192.0.2.{n + 1}", "wrong-pass-1")
    assert sign_in(OWNER, PASSWORD) == 200  # the account's limit holds for every address

    client = Client(REMOTE_ADDR=OWNER)
    client.post("/accounts/password/reset/", {"email": "alice@example.com"})
    link = RESET_LINK.search(str(mail.outbox[-1].body))
    assert link, mail.outbox[-1].body
    form = client.get(link.group(1), follow=True)
    new_password = "another-long-password-77"
    response = client.post(form.redirect_chain[-1][0], {"password1": new_password, "password2": new_password})
    assert response.status_code == 302

    assert sign_in(OWNER, new_password) == 302
