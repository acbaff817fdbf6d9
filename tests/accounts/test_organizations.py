from __future__ import annotations

import json
from typing import Any

from django.test import Client

from accounts.models import Invitation, Membership, Organization
from accounts.roles import Role
from tests.support.personas import Persona


def post(client: Client, path: str, body: dict[str, Any], **headers: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


def test_me_lists_orgs_and_current(client: Client, alice: Persona) -> None:
    client.force_login(alice.user)
    body = client.get("/api/v1/me").json()
    assert body["auth"] == "session"
    assert {o["name"] for o in body["organizations"]} == {"alice's workspace", "Alice AI"}
    assert body["current_organization"]["is_personal"] is True
    assert client.get("/api/v1/me", **alice.auth).json()["organizations"] == [
        {"id": alice.org.pk, "name": "Alice AI", "role": "owner", "is_personal": False}
    ]


def test_create_org_makes_caller_owner(client: Client, alice: Persona) -> None:
    response = post(client, "/api/v1/orgs", {"name": "  Skunkworks  "}, **alice.auth)
    assert response.status_code == 201
    assert response.json()["name"] == "Skunkworks" and response.json()["role"] == "owner"
    assert Membership.objects.get(org_id=response.json()["id"], user=alice.user).role == Role.OWNER


def test_member_cannot_invite_and_nothing_is_stored(client: Client, alice: Persona, bob: Persona) -> None:
    response = post(client, f"/api/v1/orgs/{alice.org.pk}/invitations", {"email": "x@example.com"}, **bob.auth)
    assert response.status_code == 403
    assert "admin or higher" in response.json()["error"]["message"]
    assert not Invitation.objects.exists()


def test_stranger_sees_404_for_another_org(client: Client, alice: Persona, charlie: Persona) -> None:
    for response in (
        client.get(f"/api/v1/orgs/{alice.org.pk}/members", **charlie.auth),
        post(client, f"/api/v1/orgs/{alice.org.pk}/invitations", {"email": "x@example.com"}, **charlie.auth),
        client.delete(f"/api/v1/orgs/{alice.org.pk}/members/{alice.user.pk}", **charlie.auth),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"
    assert Membership.objects.filter(org=alice.org).count() == 1
    assert not Invitation.objects.exists()


def test_duplicate_invitation_and_existing_member_are_409(client: Client, alice: Persona, bob: Persona) -> None:
    path = f"/api/v1/orgs/{alice.org.pk}/invitations"
    assert post(client, path, {"email": "new@example.com"}, **alice.auth).status_code == 201
    again = post(client, path, {"email": "NEW@example.com"}, **alice.auth)
    member = post(client, path, {"email": "bob@example.com"}, **alice.auth)
    assert again.status_code == 409 and member.status_code == 409
    assert Invitation.objects.count() == 1


def test_last_owner_cannot_be_removed(client: Client, alice: Persona) -> None:
    response = client.delete(f"/api/v1/orgs/{alice.org.pk}/members/{alice.user.pk}", **alice.auth)
    assert response.status_code == 409
    assert Membership.objects.filter(org=alice.org, user=alice.user).exists()


def test_session_user_can_act_in_any_of_their_orgs(client: Client, alice: Persona, bob: Persona) -> None:
    client.force_login(bob.user)
    members = client.get(f"/api/v1/orgs/{alice.org.pk}/members")
    assert members.status_code == 200
    personal = Organization.objects.get(created_by=bob.user, is_personal=True)
    assert client.get(f"/api/v1/orgs/{personal.pk}/members").json()[0]["role"] == "owner"


def test_org_pages_invite_and_switch(client: Client, alice: Persona) -> None:
    client.force_login(alice.user)
    client.post("/organization/switch", {"org_id": alice.org.pk})
    page = client.get("/organization/")
    assert page.status_code == 200 and "Alice AI" in page.content.decode()
    response = client.post("/organization/invite", {"email": "zed@example.com", "role": "viewer"}, follow=True)
    assert "Invitation sent to zed@example.com" in response.content.decode()
    assert Invitation.objects.get(org=alice.org).role == Role.VIEWER


def test_switching_to_a_foreign_org_is_404(client: Client, alice: Persona, charlie: Persona) -> None:
    client.force_login(alice.user)
    assert client.post("/organization/switch", {"org_id": charlie.org.pk}).status_code == 404


def test_org_switch_never_redirects_off_site(client: Client, alice: Persona) -> None:
    client.force_login(alice.user)
    response = client.post("/organization/switch", {"org_id": alice.org.pk, "next": "https://evil.example/phish"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    response = client.post("/organization/switch", {"org_id": alice.org.pk, "next": "/catalog/"})
    assert response["Location"] == "/catalog/"


def test_orgs_list_for_a_key_is_its_own_org_only(client: Client, alice: Persona) -> None:
    assert client.get("/api/v1/orgs", **alice.auth).json() == [
        {"id": alice.org.pk, "name": "Alice AI", "role": "owner", "is_personal": False}
    ]


def test_a_role_change_names_the_roles_in_the_description_and_refuses_others(
    client: Client, alice: Persona, bob: Persona
) -> None:
    description = client.get("/api/v1/openapi.json").json()
    assert description["components"]["schemas"]["MemberRoleIn"]["properties"]["role"]["enum"] == [
        "owner", "admin", "member", "viewer",
    ]  # fmt: skip
    path = f"/api/v1/orgs/{alice.org.pk}/members/{bob.user.pk}"
    refused = client.patch(path, data=json.dumps({"role": ""}), content_type="application/json", **alice.auth)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "role"
    assert Membership.objects.get(org=alice.org, user=bob.user).role == Role.MEMBER
