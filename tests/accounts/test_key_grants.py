"""Scoped keys and deployment permissions on the management API: admins grant and revoke, anyone in
the org lists, bad input and foreign objects change nothing, and a scoped key reaches only the
deployments it was granted (nothing else under /api/v1)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from accounts.auth import SESSION_ORG_KEY
from accounts.models import ApiKey, KeyGrant, Membership
from accounts.principal import Principal
from accounts.roles import Role
from accounts.services import api_key_create, api_key_revoke
from deployments.models import Deployment
from tests.fakes.engine_server import Engine, EngineThread
from tests.support.gateway import ENGINE_KEY, asgi_request, serving_deployment
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
CHAT = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def post(client: Client, path: str, body: dict[str, Any], **headers: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **headers)


def owner(persona: Persona) -> Principal:
    return Principal(user=persona.user, org=persona.org, role=Role.OWNER)


def scoped_key(persona: Persona, name: str = "customer") -> tuple[ApiKey, str]:
    return api_key_create(principal=owner(persona), name=name, kind="account", scoped=True)


def bearer(plaintext: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {plaintext}"}


def test_scoped_keys_are_created_through_the_keys_api(client: Client, alice: Persona) -> None:
    deployment = serving_deployment(alice, [])
    scoped = post(client, "/api/v1/api-keys", {"name": "customer", "scoped": True}, **alice.auth)
    assert scoped.status_code == 201 and scoped.json()["scoped"] is True
    assert ApiKey.objects.get(pk=scoped.json()["id"]).scoped is True
    plain = post(client, "/api/v1/api-keys", {"name": "ci"}, **alice.auth)
    assert plain.json()["scoped"] is False
    dep_key = post(client, "/api/v1/api-keys", {"name": "d", "kind": "deployment", "deployment_id": deployment.pk},
                   **alice.auth)  # fmt: skip
    assert dep_key.json()["scoped"] is True  # deployment keys always are
    count = ApiKey.objects.count()
    refused = post(client, "/api/v1/api-keys", {"name": "d", "kind": "deployment", "deployment_id": deployment.pk,
                                                "scoped": False}, **alice.auth)  # fmt: skip
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "scoped"
    assert ApiKey.objects.count() == count


def test_admins_grant_idempotently_list_and_revoke(client: Client, alice: Persona) -> None:
    deployment = serving_deployment(alice, [])
    key, _ = scoped_key(alice)
    path = f"/api/v1/deployments/{deployment.pk}/permissions"
    created = post(client, path, {"api_key_id": key.pk, "role": "inference"}, **alice.auth)
    assert created.status_code == 201
    grant = KeyGrant.objects.get()
    assert created.json() | {"created_at": None} == {
        "id": grant.pk, "deployment_id": deployment.pk, "api_key_id": key.pk, "api_key_name": "customer",
        "api_key_kind": "account", "masked_key": key.masked, "role": "inference", "created_at": None,
    }  # fmt: skip
    assert created.json()["created_at"].startswith(f"{grant.created_at:%Y-%m-%dT%H:%M:%S}")
    again = post(client, path, {"api_key_id": key.pk, "role": "inference"}, **alice.auth)
    assert again.status_code == 200 and again.json() == created.json()
    assert KeyGrant.objects.count() == 1
    assert client.get(path, **alice.auth).json() == [created.json()]

    revoked = client.delete(f"{path}/{key.pk}", **alice.auth)
    assert revoked.status_code == 204 and not KeyGrant.objects.exists()
    assert client.get(path, **alice.auth).json() == []
    gone = client.delete(f"{path}/{key.pk}", **alice.auth)
    assert gone.status_code == 404 and gone.json()["error"]["param"] == "key_id"


def test_a_deployment_key_can_be_granted_more_deployments_but_not_its_own(client: Client, alice: Persona) -> None:
    own, other = serving_deployment(alice, []), serving_deployment(alice, [])
    key, _ = api_key_create(principal=owner(alice), name="d", kind="deployment", deployment_id=own.pk)
    granted = post(client, f"/api/v1/deployments/{other.pk}/permissions", {"api_key_id": key.pk}, **alice.auth)
    assert granted.status_code == 201 and granted.json()["api_key_kind"] == "deployment"  # role defaults
    redundant = post(client, f"/api/v1/deployments/{own.pk}/permissions", {"api_key_id": key.pk}, **alice.auth)
    assert redundant.status_code == 409 and "own key" in redundant.json()["error"]["message"]
    assert list(KeyGrant.objects.values_list("deployment_id", flat=True)) == [other.pk]


def test_members_and_viewers_may_list_but_not_manage(client: Client, alice: Persona, bob: Persona) -> None:
    deployment = serving_deployment(alice, [])
    key, _ = scoped_key(alice)
    existing, _ = KeyGrant.objects.get_or_create(key=key, deployment=deployment)
    path = f"/api/v1/deployments/{deployment.pk}/permissions"
    for role in (Role.MEMBER, Role.VIEWER):
        Membership.objects.filter(org=alice.org, user=bob.user).update(role=role)
        other, _ = scoped_key(alice, name=f"other-{role}")
        grant = post(client, path, {"api_key_id": other.pk, "role": "inference"}, **bob.auth)
        assert grant.status_code == 403 and "admin or higher" in grant.json()["error"]["message"]
        revoke = client.delete(f"{path}/{key.pk}", **bob.auth)
        assert revoke.status_code == 403
        listed = client.get(path, **bob.auth)
        assert listed.status_code == 200 and [g["id"] for g in listed.json()] == [existing.pk]
    assert list(KeyGrant.objects.all()) == [existing]


def test_bad_grants_are_refused_with_the_reason_and_change_nothing(
    client: Client, alice: Persona, charlie: Persona
) -> None:
    deployment = serving_deployment(alice, [])
    scoped, _ = scoped_key(alice)
    unscoped = ApiKey.objects.get(org=alice.org, name="default")
    revoked, _ = scoped_key(alice, name="old")
    api_key_revoke(principal=owner(alice), key=revoked)
    foreign, _ = scoped_key(charlie)
    path = f"/api/v1/deployments/{deployment.pk}/permissions"
    cases = [
        ({"api_key_id": scoped.pk, "role": "admin"}, 400, "role", "Unknown role 'admin'; use 'inference'."),
        ({"api_key_id": "key_nope", "role": "inference"}, 404, "api_key_id", "No API key 'key_nope'."),
        ({"api_key_id": foreign.pk, "role": "inference"}, 404, "api_key_id", f"No API key {foreign.pk!r}."),
        ({"api_key_id": unscoped.pk, "role": "inference"}, 409, "api_key_id", None),  # it needs no grant
        ({"api_key_id": revoked.pk, "role": "inference"}, 409, "api_key_id", None),
    ]
    for body, status, param, message in cases:
        response = post(client, path, body, **alice.auth)
        assert response.status_code == status, body
        error = response.json()["error"]
        assert error["param"] == param
        assert message is None or error["message"] == message
    missing = post(client, path, {"role": "inference"}, **alice.auth)
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "api_key_id"
    foreign_revoke = client.delete(f"{path}/{foreign.pk}", **alice.auth)
    assert foreign_revoke.status_code == 404
    assert not KeyGrant.objects.exists()


def test_another_orgs_deployment_is_404_for_every_method(client: Client, alice: Persona, charlie: Persona) -> None:
    theirs = serving_deployment(charlie, [])
    their_key, _ = scoped_key(charlie)
    grant = KeyGrant.objects.create(key=their_key, deployment=theirs)
    mine, _ = scoped_key(alice)
    path = f"/api/v1/deployments/{theirs.pk}/permissions"
    responses = [
        client.get(path, **alice.auth),
        post(client, path, {"api_key_id": mine.pk, "role": "inference"}, **alice.auth),
        post(client, path, {"api_key_id": their_key.pk, "role": "inference"}, **alice.auth),
        client.delete(f"{path}/{their_key.pk}", **alice.auth),
    ]
    for response in responses:
        assert response.status_code == 404
        assert response.json()["error"] == {
            "type": "not_found_error", "message": f"No deployment {theirs.pk!r}.", "param": "deployment_id"
        }  # fmt: skip
    assert list(KeyGrant.objects.all()) == [grant]


def test_a_scoped_key_has_no_account_level_access(client: Client, alice: Persona) -> None:
    deployment = serving_deployment(alice, [])
    key, plaintext = scoped_key(alice)
    KeyGrant.objects.create(key=key, deployment=deployment)
    one = f"/api/v1/deployments/{deployment.pk}"
    calls = [("get", "/api/v1/me"), ("get", "/api/v1/deployments"), ("get", "/api/v1/api-keys"), ("get", one),
             ("get", f"{one}/permissions"), ("delete", one), ("get", "/api/v1/billing/balance")]  # fmt: skip
    for method, path in calls:
        response = getattr(client, method)(path, **bearer(plaintext))
        assert response.status_code == 403, path
        assert response.json()["error"]["message"].startswith("This key is scoped")
    assert Deployment.objects.get(pk=deployment.pk).status == "active"


def test_a_scoped_key_invokes_only_granted_deployments_on_the_chat_route(
    client: Client, alice: Persona, bob: Persona, charlie: Persona
) -> None:
    with EngineThread(Engine(api_key=ENGINE_KEY)) as granted_engine, EngineThread(Engine(api_key=ENGINE_KEY)) as other:
        granted = serving_deployment(alice, [granted_engine])
        ungranted = serving_deployment(alice, [other])
        foreign = serving_deployment(charlie, [other])
        key, plaintext = api_key_create(principal=Principal(user=bob.user, org=alice.org, role=Role.MEMBER),
                                        name="customer", kind="account", scoped=True)  # fmt: skip
        KeyGrant.objects.create(key=key, deployment=granted)

        def chat(deployment: Deployment) -> Any:  # the gateway serves the route (gpucloud/asgi.py)
            return asgi_request("POST", f"/api/v1/deployments/{deployment.pk}/chat/completions", json=CHAT,
                                headers={"Authorization": f"Bearer {plaintext}"})  # fmt: skip

        assert chat(granted).status_code == 200
        refused = chat(ungranted)
        assert refused.status_code == 403 and f"may not invoke '{ungranted.pk}'" in refused.json()["error"]["message"]
        assert chat(foreign).status_code == 404
        # The creator's role still bounds the key: a viewer's scoped key reads nothing and invokes nothing.
        Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
        demoted = chat(granted)
        assert demoted.status_code == 403 and "viewer" in demoted.json()["error"]["message"]
        assert (len(granted_engine.engine.records), len(other.engine.records)) == (1, 0)


def test_a_viewer_invokes_nothing_on_the_chat_route_with_a_session_or_an_account_key(
    client: Client, alice: Persona, bob: Persona
) -> None:
    with EngineThread(Engine(api_key=ENGINE_KEY)) as engine:
        deployment = serving_deployment(alice, [engine])
        path = f"/api/v1/deployments/{deployment.pk}/chat/completions"  # the gateway serves it (gpucloud/asgi.py)
        by_bob = {"Authorization": f"Bearer {bob.key}"}
        assert asgi_request("POST", path, json=CHAT, headers=by_bob).status_code == 200  # a member may
        Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
        by_key = asgi_request("POST", path, json=CHAT, headers=by_bob)
        assert by_key.status_code == 403 and "viewer" in by_key.json()["error"]["message"]
        browser = Client()
        browser.force_login(bob.user)
        chosen = browser.session
        chosen[SESSION_ORG_KEY] = alice.org.pk  # working in alice's org, as the org switcher sets it
        chosen.save()
        token = "t" * 32  # a CSRF secret: the cookie and the header a page of this site sends
        cookies = {settings.SESSION_COOKIE_NAME: browser.cookies[settings.SESSION_COOKIE_NAME].value,
                   settings.CSRF_COOKIE_NAME: token}  # fmt: skip
        session = asgi_request("POST", path, json=CHAT, headers={"X-CSRFToken": token}, cookies=cookies)
        assert session.status_code == 403 and "viewer" in session.json()["error"]["message"], session.content
        assert len(engine.engine.records) == 1  # only the member's request reached the engine
