"""The SSH keys page: list, add (paste a key, optional name) and delete, as a signed-in browser."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.auth import SESSION_ORG_KEY
from accounts.models import Membership, SshKey
from accounts.roles import Role
from tests.support.pages import signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDaBCEfkQtI0nTKu0EPpyfy4DddK9aL4x+/W4aTR77uw me@host"
ED25519_FINGERPRINT = "SHA256:hcGLcC7TxouL1/dHqtPy19N/uvDHsOWkm9Rt3omkNkE"


def test_add_a_key_from_the_page_then_delete_it(alice: Persona) -> None:
    browser = signed_in(alice)
    empty = browser.get("/ssh-keys/").content.decode()
    assert "No SSH keys yet." in empty and 'name="public_key"' in empty
    assert '<a href="/ssh-keys/" aria-current="page">SSH keys</a>' in empty

    added = browser.post("/ssh-keys/add", {"public_key": ED25519 + "\r\n", "name": "laptop"}, follow=True)
    assert added.status_code == 200 and added.redirect_chain == [("/ssh-keys/", 302)]  # post/redirect/get
    key = SshKey.objects.get(org=alice.org)
    assert (key.name, key.public_key, key.fingerprint, key.created_by) == ("laptop", ED25519, ED25519_FINGERPRINT,
                                                                            alice.user)  # fmt: skip
    html = added.content.decode()
    assert f"SSH key “laptop” added ({ED25519_FINGERPRINT})." in html
    assert f'<td class="mono" data-label="Fingerprint">{ED25519_FINGERPRINT}</td>' in html
    assert f'action="/ssh-keys/{key.pk}/delete"' in html

    deleted = browser.post(f"/ssh-keys/{key.pk}/delete", follow=True)
    assert deleted.redirect_chain == [("/ssh-keys/", 302)]
    assert "SSH key “laptop” deleted." in deleted.content.decode()
    assert not SshKey.objects.exists()


def test_delete_with_htmx_swaps_the_list_in_place(alice: Persona) -> None:
    browser = signed_in(alice)
    browser.post("/ssh-keys/add", {"public_key": ED25519})
    key = SshKey.objects.get()
    swapped = browser.post(f"/ssh-keys/{key.pk}/delete", HTTP_HX_REQUEST="true")
    html = swapped.content.decode()
    assert swapped.status_code == 200
    assert html.lstrip().startswith('<section class="card" id="ssh-keys">') and "No SSH keys yet." in html
    assert "<html" not in html
    assert not SshKey.objects.exists()


def test_a_refused_key_is_shown_on_the_page_with_what_was_pasted(alice: Persona) -> None:
    browser = signed_in(alice)
    private = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n-----END OPENSSH PRIVATE KEY-----"
    refused = browser.post("/ssh-keys/add", {"public_key": private, "name": "oops"})
    assert refused.status_code == 400
    html = refused.content.decode()
    assert "That is a private key; paste the .pub file" in html
    assert 'aria-invalid="true"' in html and "b3BlbnNzaC1rZXktdjE=" in html and 'value="oops"' in html
    assert not SshKey.objects.exists()

    browser.post("/ssh-keys/add", {"public_key": ED25519})
    duplicate = browser.post("/ssh-keys/add", {"public_key": ED25519})
    assert duplicate.status_code == 409
    assert f"This organization already has the key {ED25519_FINGERPRINT} as “me@host”." in duplicate.content.decode()
    assert SshKey.objects.count() == 1


def test_viewers_see_the_keys_without_the_forms_and_strangers_get_404(alice: Persona, bob: Persona,
                                                                      charlie: Persona) -> None:  # fmt: skip
    signed_in(alice).post("/ssh-keys/add", {"public_key": ED25519})
    key = SshKey.objects.get()
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    viewer = Client()
    viewer.force_login(bob.user)
    session = viewer.session
    session[SESSION_ORG_KEY] = alice.org.pk
    session.save()

    html = viewer.get("/ssh-keys/").content.decode()
    assert ED25519_FINGERPRINT in html and 'name="public_key"' not in html and "Delete</button>" not in html
    assert viewer.post(f"/ssh-keys/{key.pk}/delete").status_code == 403
    assert viewer.post("/ssh-keys/add", {"public_key": ED25519.replace("me@host", "x")}).status_code == 403
    stranger = signed_in(charlie)
    assert ED25519_FINGERPRINT not in stranger.get("/ssh-keys/").content.decode()
    assert stranger.post(f"/ssh-keys/{key.pk}/delete").status_code == 404
    assert SshKey.objects.count() == 1


def test_the_form_addresses_answer_a_get_with_the_page(alice: Persona) -> None:
    browser = signed_in(alice)
    assert browser.get("/ssh-keys/add")["Location"] == "/ssh-keys/"
    assert browser.get("/ssh-keys/sshkey_x/delete")["Location"] == "/ssh-keys/"
    assert Client().get("/ssh-keys/")["Location"].startswith("/accounts/login/")
