"""Changing members' roles (API and organization page): admins manage non-owners, only owners make
or unmake owners, the last owner stays; refusals change nothing; the page's forms show errors inline."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from accounts.models import Invitation, Membership
from accounts.roles import Role
from tests.support.pages import signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db


def patch_role(client: Client, persona: Persona, org_id: str, user_id: int, role: str) -> Any:
    return client.patch(f"/api/v1/orgs/{org_id}/members/{user_id}", data=json.dumps({"role": role}),
                        content_type="application/json", **persona.auth)  # fmt: skip


def role_of(persona: Persona, org_id: str) -> str:
    return Membership.objects.get(org_id=org_id, user=persona.user).role


def test_owners_change_roles_and_admins_manage_everyone_but_owners(
    client: Client, alice: Persona, bob: Persona
) -> None:
    made_admin = patch_role(client, alice, alice.org.pk, bob.user.pk, "admin")
    assert made_admin.status_code == 200
    assert made_admin.json() | {"joined_at": None} == {
        "user_id": bob.user.pk, "email": "bob@example.com", "role": "admin", "joined_at": None
    }  # fmt: skip
    # bob is an admin now: he may not make himself owner nor demote alice, the owner.
    for user_id, role in ((bob.user.pk, "owner"), (alice.user.pk, "member")):
        refused = patch_role(client, bob, alice.org.pk, user_id, role)
        assert refused.status_code == 403 and "owner" in refused.json()["error"]["message"]
    assert (role_of(alice, alice.org.pk), role_of(bob, alice.org.pk)) == (Role.OWNER, Role.ADMIN)


def test_the_last_owner_stays_and_bad_input_changes_nothing(
    client: Client, alice: Persona, bob: Persona, charlie: Persona
) -> None:
    last = patch_role(client, alice, alice.org.pk, alice.user.pk, "admin")
    assert last.status_code == 409 and "at least one owner" in last.json()["error"]["message"]
    unknown = patch_role(client, alice, alice.org.pk, bob.user.pk, "superuser")
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "role"
    assert patch_role(client, alice, alice.org.pk, charlie.user.pk, "viewer").status_code == 404  # not a member
    assert patch_role(client, charlie, alice.org.pk, bob.user.pk, "viewer").status_code == 404  # foreign org
    assert (role_of(alice, alice.org.pk), role_of(bob, alice.org.pk)) == (Role.OWNER, Role.MEMBER)
    # With a second owner, the first may step down.
    assert patch_role(client, alice, alice.org.pk, bob.user.pk, "owner").status_code == 200
    assert patch_role(client, alice, alice.org.pk, alice.user.pk, "admin").json()["role"] == "admin"


def test_the_organization_page_changes_roles_and_shows_refusals_inline(alice: Persona, bob: Persona) -> None:
    client = signed_in(alice)
    page = client.get("/organization/").content.decode()
    assert f'id="role-{bob.user.pk}"' in page and f'id="role-{alice.user.pk}"' not in page  # not your own
    changed = client.post(f"/organization/members/{bob.user.pk}/role", {"role": "viewer"}, follow=True)
    assert "bob@example.com is now viewer." in changed.content.decode()
    assert role_of(bob, alice.org.pk) == Role.VIEWER

    taken = client.post("/organization/invite", {"email": "bob@example.com", "role": "admin"})
    assert taken.status_code == 409
    html = taken.content.decode()
    assert 'id="invite-error" role="alert">bob@example.com is already a member of Alice AI.<' in html
    assert 'value="bob@example.com"' in html and '<option value="admin" selected>' in html  # what was typed stays
    assert not Invitation.objects.exists()

    unnamed = client.post("/organization/create", {"name": "   "})
    assert unnamed.status_code == 400 and 'id="create-error"' in unnamed.content.decode()
    assert Membership.objects.filter(user=alice.user).count() == 2  # personal + Alice AI, nothing new
