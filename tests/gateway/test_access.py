"""Who may call what through /v1: account keys of members, deployment keys on their own
deployment, viewers only read; a key revoked or regenerated, a member removed or demoted, is
refused at once (announced to the caches at commit), and within the cache bound without it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from accounts.models import ApiKey, ApiKeyKind, Membership
from accounts.principal import Principal
from accounts.roles import Role
from accounts.services import (
    api_key_create,
    api_key_regenerate,
    api_key_revoke,
    membership_remove,
    membership_role_set,
)
from gateway import keys, routing
from tests.fakes.engine_server import EngineThread
from tests.support.gateway import serving_deployment
from tests.support.personas import Persona
from tests.support.processes import listening

pytestmark = pytest.mark.django_db(transaction=True)
BODY = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


def call(server: str, key: str, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(f"{server}{path}", json=BODY, headers={"Authorization": f"Bearer {key}"}, timeout=20)


def test_viewers_list_models_but_do_not_invoke(
    server: str, alice: Persona, bob: Persona, engines: Callable[[], EngineThread]
) -> None:
    engine = engines()
    serving_deployment(alice, [engine])
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    refused = call(server, bob.key)
    assert refused.status_code == 403 and "viewer" in refused.json()["error"]["message"]
    listed = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {bob.key}"})
    assert listed.status_code == 200 and listed.json()["data"][0]["availability"] == "instant"
    assert engine.engine.records == []  # nothing forwarded


def test_deployment_keys_reach_their_own_deployment_only(
    server: str, alice: Persona, charlie: Persona, engines: Callable[[], EngineThread]
) -> None:
    mine, other, foreign = engines(), engines(), engines()
    deployment = serving_deployment(alice, [mine])
    serving_deployment(alice, [other], model="smollm2-135m-embedding")
    serving_deployment(charlie, [foreign])
    principal = Principal(user=alice.user, org=alice.org, role=Role.OWNER)
    _, scoped = api_key_create(principal=principal, name="c", kind=ApiKeyKind.DEPLOYMENT, deployment_id=deployment.pk)
    assert call(server, scoped).status_code == 200
    other_call = httpx.post(f"{server}/v1/embeddings", json={"model": "smollm2-135m-embedding", "input": "x"},
                            headers={"Authorization": f"Bearer {scoped}"})  # fmt: skip
    assert other_call.status_code == 403 and other_call.json()["error"]["code"] == "permission_denied"
    listed = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {scoped}"}).json()
    assert [m["deployment_id"] for m in listed["data"]] == [deployment.pk]
    # charlie's key never sees alice's deployment, by model name or by id
    assert call(server, charlie.key).status_code == 200 and len(foreign.engine.records) == 1
    by_id = httpx.post(f"{server}/v1/chat/completions", json={**BODY, "model": deployment.pk},
                       headers={"Authorization": f"Bearer {charlie.key}"})  # fmt: skip
    assert by_id.status_code == 404 and by_id.json()["error"]["code"] == "model_not_found"
    assert (len(mine.engine.records), len(other.engine.records)) == (1, 0)


def test_a_revoked_key_stops_within_the_cache_bound(
    server: str, alice: Persona, engines: Callable[[], EngineThread], monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(keys._cache, "ttl", 0.5)  # the bound is KEY_CACHE_SECONDS (5 s); shortened here
    serving_deployment(alice, [engines()])
    assert call(server, alice.key).status_code == 200
    principal = Principal(user=alice.user, org=alice.org, role=Role.OWNER)
    api_key_revoke(principal=principal, key=ApiKey.objects.get(org=alice.org))
    time.sleep(0.6)
    refused = call(server, alice.key)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert keys.KEY_CACHE_SECONDS == 5.0


@pytest.mark.parametrize("topology", ["distributed", "embedded"])
def test_revoked_regenerated_demoted_and_removed_are_refused_at_once(
    server: str,
    alice: Persona,
    bob: Persona,
    engines: Callable[[], EngineThread],
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    topology: str,
) -> None:
    if topology == "embedded":
        settings.REDIS_URL = ""  # no pub/sub: the change reaches this process's caches directly
    elif not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL")
    monkeypatch.setattr(keys._cache, "ttl", 3600.0)  # nothing expires: the announcement alone does it
    serving_deployment(alice, [engines()])
    owner = Principal(user=alice.user, org=alice.org, role=Role.OWNER)
    key, plaintext = api_key_create(principal=owner, name="ci", kind=ApiKeyKind.ACCOUNT)
    assert call(server, plaintext).status_code == 200
    _, fresh = api_key_regenerate(principal=owner, key=key)
    assert call(server, plaintext).status_code == 401
    assert call(server, fresh).status_code == 200
    api_key_revoke(principal=owner, key=key)
    refused = call(server, fresh)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]

    assert call(server, bob.key).status_code == 200
    membership_role_set(principal=owner, user_id=bob.user.pk, role=Role.VIEWER)
    demoted = call(server, bob.key)
    assert demoted.status_code == 403 and "viewer" in demoted.json()["error"]["message"]
    membership_remove(principal=owner, user_id=bob.user.pk)
    removed = call(server, bob.key)
    assert removed.status_code == 401 and "no longer a member" in removed.json()["error"]["message"]
    assert call(server, alice.key).status_code == 200  # other keys stay cached and working


def test_malformed_requests_get_clear_400s(server: str, alice: Persona, engines: Callable[[], EngineThread]) -> None:
    engine = engines()
    serving_deployment(alice, [engine])
    auth = {"Authorization": f"Bearer {alice.key}"}
    cases = [
        (b"{nope", "The request body is not valid JSON.", None),
        (b"[1, 2]", "The request body must be a JSON object.", None),
        # OpenAI's request schema first (issue 14), then what the gateway itself needs.
        (b'{"messages": []}', "Invalid 'messages': [] has less than 1 item.", "messages"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "'model' is required.", "model"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "hi"}]}',
         "Invalid 'model': 5 is not of type \"string\".", "model"),
        (b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "stream": true, '
         b'"stream_options": 3}', "Invalid 'stream_options': 3 is not of type \"object\".", "stream_options"),
    ]  # fmt: skip
    for body, message, param in cases:
        response = httpx.post(f"{server}/v1/chat/completions", content=body, headers=auth)
        assert response.status_code == 400, body
        assert response.json() == {
            "error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}
        }
    assert httpx.get(f"{server}/v1/chat/completions", headers=auth).status_code == 405
    assert httpx.post(f"{server}/v1/nothing", headers=auth).status_code == 404
    assert httpx.post(f"{server}/v1/chat/completions", json=BODY).status_code == 401
    for key in ("gpc_live_nonsense", "not-a-key"):  # the code the README's errors table promises, as OpenAI's
        wrong = httpx.post(f"{server}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key", wrong.text
        assert wrong.json()["error"]["type"] == "invalid_request_error"
    assert engine.engine.records == []


def test_warm_requests_read_no_database(
    server: str, alice: Persona, engines: Callable[[], EngineThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a key and a route are cached, the hot path makes no lookup at all (each lookup is the
    only way the gateway reaches the database)."""

    serving_deployment(alice, [engines()])
    assert call(server, alice.key).status_code == 200  # warms both caches, and starts the subscriber
    # Once subscribed it makes the caches forget what they hold (changes may have been missed before):
    # wait for that, then warm them again.
    deadline = time.monotonic() + 15
    while os.getpid() not in listening() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert call(server, alice.key).status_code == 200
    lookups: list[str] = []
    real_lookup, real_resolve = keys._lookup, routing._resolve

    def counted_lookup(token: str) -> object:
        lookups.append("key")
        return real_lookup(token)

    def counted_resolve(org: str, model: str) -> object:
        lookups.append("route")
        return real_resolve(org, model)

    monkeypatch.setattr(keys, "_lookup", counted_lookup)
    monkeypatch.setattr(routing, "_resolve", counted_resolve)
    statuses = [call(server, alice.key).status_code for _ in range(10)]  # well within half a TTL
    assert statuses == [200] * 10
    assert lookups == []
