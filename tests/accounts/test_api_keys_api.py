from __future__ import annotations

import json
from typing import Any

from django.test import Client

from accounts.keys import key_generate
from accounts.models import ApiKey, ApiKeyKind, Membership
from accounts.roles import Role
from deployments.models import Deployment
from tests.support.personas import Persona


def post(client: Client, path: str, body: dict[str, Any], **headers: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


def test_create_shows_key_once_and_it_authenticates(client: Client, alice: Persona) -> None:
    response = post(client, "/api/v1/api-keys", {"name": "ci", "kind": "account"}, **alice.auth)
    assert response.status_code == 201
    body = response.json()
    assert body["key"].startswith("gpc_live_")
    assert body["masked_key"] == "gpc_live_••••" + body["key"][-4:]
    stored = ApiKey.objects.get(pk=body["id"])
    assert body["key"] not in {stored.key_hash, stored.last_four}

    listed = client.get("/api/v1/api-keys", **alice.auth).json()
    assert {k["id"] for k in listed} == {body["id"], ApiKey.objects.get(name="default", org=alice.org).pk}
    assert all("key" not in k for k in listed)

    me = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {body['key']}")
    assert me.status_code == 200
    assert me.json()["current_organization"]["id"] == alice.org.pk


def test_missing_wrong_and_revoked_keys_get_distinct_401s(client: Client, alice: Persona) -> None:
    missing = client.get("/api/v1/me")
    wrong = client.get("/api/v1/me", HTTP_AUTHORIZATION="Bearer gpc_live_" + "a" * 46)
    malformed = client.get("/api/v1/me", HTTP_AUTHORIZATION="Token abc")
    key = ApiKey.objects.get(org=alice.org, name="default")
    assert client.delete(f"/api/v1/api-keys/{key.pk}", **alice.auth).status_code == 200
    revoked = client.get("/api/v1/me", **alice.auth)

    for response in (missing, wrong, malformed, revoked):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"
    messages = [r.json()["error"]["message"] for r in (missing, wrong, malformed, revoked)]
    assert "No API key provided" in messages[0]
    assert messages[1].startswith("Invalid API key")
    assert "Malformed Authorization header" in messages[2]
    assert "was revoked on" in messages[3]


def test_a_valid_checksum_for_an_unknown_key_is_a_401(client: Client, alice: Persona) -> None:

    forged = key_generate(ApiKeyKind.ACCOUNT).plaintext  # well-formed, never stored
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("Invalid API key")


def test_regenerate_swaps_the_secret_in_place(client: Client, alice: Persona) -> None:
    key = ApiKey.objects.get(org=alice.org, name="default")
    response = client.post(f"/api/v1/api-keys/{key.pk}/regenerate", **alice.auth)
    assert response.status_code == 200
    new_secret = response.json()["key"]
    assert response.json()["id"] == key.pk and new_secret != alice.key
    assert client.get("/api/v1/me", **alice.auth).status_code == 401
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {new_secret}").status_code == 200


def test_revoked_key_cannot_be_regenerated(client: Client, alice: Persona) -> None:
    other = post(client, "/api/v1/api-keys", {"name": "old"}, **alice.auth).json()
    client.delete(f"/api/v1/api-keys/{other['id']}", **alice.auth)
    before = ApiKey.objects.get(pk=other["id"]).key_hash
    response = client.post(f"/api/v1/api-keys/{other['id']}/regenerate", **alice.auth)
    assert response.status_code == 409
    assert ApiKey.objects.get(pk=other["id"]).key_hash == before


def test_revoke_is_idempotent(client: Client, alice: Persona) -> None:
    other = post(client, "/api/v1/api-keys", {"name": "temp"}, **alice.auth).json()
    first = client.delete(f"/api/v1/api-keys/{other['id']}", **alice.auth).json()["revoked_at"]
    second = client.delete(f"/api/v1/api-keys/{other['id']}", **alice.auth).json()["revoked_at"]
    assert first is not None and first == second


def test_another_orgs_key_is_404_and_untouched(client: Client, alice: Persona, charlie: Persona) -> None:
    charlies_key = ApiKey.objects.get(org=charlie.org)
    for response in (
        client.delete(f"/api/v1/api-keys/{charlies_key.pk}", **alice.auth),
        client.post(f"/api/v1/api-keys/{charlies_key.pk}/regenerate", **alice.auth),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"
    charlies_key.refresh_from_db()
    assert charlies_key.revoked_at is None
    assert client.get("/api/v1/me", **charlie.auth).status_code == 200


def test_deployment_key_needs_a_deployment_of_the_same_org(client: Client, alice: Persona, charlie: Persona) -> None:
    charlies = Deployment.objects.create(org=charlie.org, name="c")
    before = ApiKey.objects.count()
    no_id = post(client, "/api/v1/api-keys", {"name": "d", "kind": "deployment"}, **alice.auth)
    foreign = post(
        client, "/api/v1/api-keys", {"name": "d", "kind": "deployment", "deployment_id": charlies.pk}, **alice.auth
    )
    assert no_id.status_code == 400 and no_id.json()["error"]["param"] == "deployment_id"
    assert foreign.status_code == 404
    assert ApiKey.objects.count() == before


def test_deployment_key_is_refused_by_the_management_api(client: Client, alice: Persona) -> None:
    deployment = Deployment.objects.create(org=alice.org, name="llama")
    created = post(
        client, "/api/v1/api-keys", {"name": "cust", "kind": "deployment", "deployment_id": deployment.pk}, **alice.auth
    )
    assert created.status_code == 201
    assert created.json()["key"].startswith("gpc_dep_")
    assert created.json()["deployment_id"] == deployment.pk
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {created.json()['key']}")
    assert response.status_code == 403
    assert "inference API" in response.json()["error"]["message"]


def test_viewer_cannot_create_keys_and_nothing_is_created(client: Client, alice: Persona, bob: Persona) -> None:
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    before = ApiKey.objects.count()
    response = post(client, "/api/v1/api-keys", {"name": "nope"}, **bob.auth)
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
    assert ApiKey.objects.count() == before


def test_removing_a_member_disables_their_account_keys(client: Client, alice: Persona, bob: Persona) -> None:
    assert client.get("/api/v1/me", **bob.auth).status_code == 200
    assert client.delete(f"/api/v1/orgs/{alice.org.pk}/members/{bob.user.pk}", **alice.auth).status_code == 204
    response = client.get("/api/v1/me", **bob.auth)
    assert response.status_code == 401
    assert "no longer a member" in response.json()["error"]["message"]


def test_bad_input_is_422_with_the_field_named(client: Client, alice: Persona) -> None:
    before = ApiKey.objects.count()
    response = post(client, "/api/v1/api-keys", {"name": "", "kind": "root"}, **alice.auth)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] in {"name", "kind"}
    assert ApiKey.objects.count() == before


def test_session_writes_need_csrf(alice: Persona) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice.user)
    before = ApiKey.objects.count()
    refused = post(client, "/api/v1/api-keys", {"name": "web"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    assert ApiKey.objects.count() == before
    client.get("/api-keys/")  # the page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    accepted = post(client, "/api/v1/api-keys", {"name": "web"}, HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201
    assert client.get("/api/v1/me").json()["auth"] == "session"


def test_last_used_is_recorded(client: Client, alice: Persona) -> None:
    key = ApiKey.objects.get(org=alice.org, name="default")
    assert key.last_used_at is None
    client.get("/api/v1/me", **alice.auth)
    key.refresh_from_db()
    assert key.last_used_at is not None
