"""Scoped keys at the gateway: a scoped account key or a deployment key reaches only the deployments it
was granted (by model name, by id, and through the per-deployment and org-scoped routes); a refusal
is a 403 in OpenAI's shape before anything is forwarded, held or woken; a grant given or revoked
through the service shows at once, one changed in the database directly within the key cache bound."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from accounts.grants import key_grant_create, key_grant_revoke
from accounts.models import ApiKey, KeyGrant, Membership
from accounts.principal import Principal
from accounts.roles import Role
from accounts.services import api_key_create
from billing.models import CreditHold
from deployments.models import Deployment
from fleet.models import Instance
from gateway import keys
from tests.fakes.engine_server import EngineThread
from tests.support.billing import fund
from tests.support.gateway import serving_deployment
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def owner(persona: Persona) -> Principal:
    return Principal(user=persona.user, org=persona.org, role=Role.OWNER)


def scoped_key(persona: Persona, *, deployment: Deployment | None = None) -> tuple[ApiKey, str]:
    if deployment is not None:
        return api_key_create(principal=owner(persona), name="d", kind="deployment", deployment_id=deployment.pk)
    return api_key_create(principal=owner(persona), name="customer", kind="account", scoped=True)


def chat(
    server: str, key: str, *, path: str = "/v1/chat/completions", headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    return httpx.post(f"{server}{path}", json={**BODY, **body}, headers=headers, timeout=20)


def listed(server: str, key: str) -> list[str]:
    response = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {key}"})
    return [m["deployment_id"] for m in response.json()["data"]]


def assert_refused(response: httpx.Response, target: str) -> None:
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "message": f"This key may not invoke '{target}': a scoped key reaches only the deployments it was "
            "granted (an org admin grants them with POST /api/v1/deployments/{id}/permissions).",
            "type": "invalid_request_error", "param": None, "code": "permission_denied",
        }
    }  # fmt: skip


def test_a_scoped_account_key_reaches_granted_deployments_only(
    server: str, alice: Persona, charlie: Persona, engines: Callable[[], EngineThread]
) -> None:
    first, second, foreign = engines(), engines(), engines()
    older = serving_deployment(alice, [first])
    newer = serving_deployment(alice, [second])  # the org's pick for the model name: newest ready
    serving_deployment(charlie, [foreign])
    key, plaintext = scoped_key(alice)

    assert_refused(chat(server, plaintext), "smollm2-135m-instruct")
    assert listed(server, plaintext) == []
    KeyGrant.objects.create(key=key, deployment=older)
    keys.cache_clear()  # grants are read with the key (cached up to KEY_CACHE_SECONDS)

    # By model name the key is routed to its granted deployment, not the org's newest one.
    assert [chat(server, plaintext).status_code for _ in range(3)] == [200] * 3
    assert chat(server, plaintext, model=older.pk).status_code == 200
    assert_refused(chat(server, plaintext, model=newer.pk), newer.pk)
    assert listed(server, plaintext) == [older.pk]
    # another org's deployment does not exist for this key
    by_id = chat(server, plaintext, model=charlie.org.deployments.get().pk)
    assert by_id.status_code == 404 and by_id.json()["error"]["code"] == "model_not_found"
    assert (len(first.engine.records), len(second.engine.records), len(foreign.engine.records)) == (4, 0, 0)


def test_a_deployment_key_reaches_its_own_and_granted_deployments(
    server: str, alice: Persona, engines: Callable[[], EngineThread]
) -> None:
    own_engine, granted_engine, other_engine = engines(), engines(), engines()
    own = serving_deployment(alice, [own_engine])
    granted = serving_deployment(alice, [granted_engine], model="smollm2-135m-embedding")
    other = serving_deployment(alice, [other_engine], model="smollm2-135m-embedding")
    key, plaintext = scoped_key(alice, deployment=own)
    KeyGrant.objects.create(key=key, deployment=granted)

    assert chat(server, plaintext).status_code == 200
    embed = {"model": granted.pk, "input": "x"}
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert httpx.post(f"{server}/v1/embeddings", json=embed, headers=headers).status_code == 200
    refused = httpx.post(f"{server}/v1/embeddings", json={**embed, "model": other.pk}, headers=headers)
    assert_refused(refused, other.pk)
    assert sorted(listed(server, plaintext)) == sorted([own.pk, granted.pk])
    assert (len(own_engine.engine.records), len(granted_engine.engine.records), len(other_engine.engine.records)) == (
        1, 1, 0,
    )  # fmt: skip


def test_per_deployment_and_org_scoped_routes_enforce_grants(
    server: str, alice: Persona, charlie: Persona, engines: Callable[[], EngineThread]
) -> None:
    granted_engine, other_engine = engines(), engines()
    granted = serving_deployment(alice, [granted_engine])
    ungranted = serving_deployment(alice, [other_engine])
    key, plaintext = scoped_key(alice)
    KeyGrant.objects.create(key=key, deployment=granted)
    for prefix in ("/api/v1", f"/api/v1/orgs/{alice.org.pk}"):
        assert chat(server, plaintext, path=f"{prefix}/deployments/{granted.pk}/chat/completions").status_code == 200
        refused = chat(server, plaintext, path=f"{prefix}/deployments/{ungranted.pk}/chat/completions")
        assert_refused(refused, ungranted.pk)
    wrong_org = chat(server, plaintext, path=f"/api/v1/orgs/{charlie.org.pk}/deployments/{granted.pk}/chat/completions")
    assert wrong_org.status_code == 404
    assert (len(granted_engine.engine.records), len(other_engine.engine.records)) == (2, 0)


def test_an_ungranted_cold_deployment_is_neither_held_nor_woken(server: str, alice: Persona) -> None:
    fund(alice.org, 10_000_000)
    cold = serving_deployment(alice, [], status="scaled_to_zero")
    Deployment.objects.filter(pk=cold.pk).update(desired_replicas=0)
    _, plaintext = scoped_key(alice)
    assert_refused(chat(server, plaintext, model=cold.pk), cold.pk)
    assert_refused(chat(server, plaintext, headers={"X-Wait-For-Ready": "1"}), "smollm2-135m-instruct")
    assert not CreditHold.objects.exists()
    assert not Instance.objects.filter(deployment=cold).exists()
    assert Deployment.objects.get(pk=cold.pk).status == "scaled_to_zero"


def test_a_grant_given_or_revoked_shows_at_once(
    server: str, alice: Persona, engines: Callable[[], EngineThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys._cache, "ttl", 3600.0)  # nothing expires: the announcement alone does it
    deployment = serving_deployment(alice, [engines()])
    key, plaintext = scoped_key(alice)
    assert_refused(chat(server, plaintext), "smollm2-135m-instruct")
    key_grant_create(principal=owner(alice), deployment=deployment, key_id=key.pk, role="inference")
    assert chat(server, plaintext).status_code == 200
    key_grant_revoke(principal=owner(alice), deployment=deployment, key_id=key.pk)
    assert_refused(chat(server, plaintext), "smollm2-135m-instruct")


def test_a_revoked_grant_stops_within_the_cache_bound(
    server: str, alice: Persona, bob: Persona, engines: Callable[[], EngineThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys._cache, "ttl", 0.5)  # the bound is KEY_CACHE_SECONDS (5 s); shortened here
    deployment = serving_deployment(alice, [engines()])
    key, plaintext = api_key_create(principal=Principal(user=bob.user, org=alice.org, role=Role.MEMBER),
                                    name="customer", kind="account", scoped=True)  # fmt: skip
    grant = KeyGrant.objects.create(key=key, deployment=deployment)
    assert chat(server, plaintext).status_code == 200
    grant.delete()
    time.sleep(0.6)
    assert_refused(chat(server, plaintext), "smollm2-135m-instruct")
    # and the creator's role bounds the key: a viewer's scoped key invokes nothing, granted or not
    KeyGrant.objects.create(key=key, deployment=deployment)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    time.sleep(0.6)
    demoted = chat(server, plaintext)
    assert demoted.status_code == 403 and "viewer" in demoted.json()["error"]["message"]
