"""One door (issue 13): a chat from a signed-in page takes the gateway's way, like a bearer-key call:
metered, held to the concurrency limit, a cold deployment woken; the session's org and role decide,
and a cookie without Django's CSRF token (or from another site) is refused before anything is
forwarded."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import Client

from accounts.auth import SESSION_ORG_KEY
from accounts.models import Membership, Organization, User
from accounts.principal import Principal
from accounts.roles import Role
from accounts.services import membership_remove, membership_role_set
from deployments.models import Deployment
from gateway import sessions
from gateway.app import gateway_shutdown
from gpucloud.asgi import http_app
from tests.fakes.engine_server import EngineThread
from tests.gateway.test_wake import cold_deployment, launches  # noqa: F401  (a fixture)
from tests.support.billing import fund
from tests.support.gateway import counters, serving_deployment
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)  # the server thread must see committed rows
Engines = Callable[[], EngineThread]
CHAT = {"messages": [{"role": "user", "content": "one two"}], "max_tokens": 3}
USD = 1_000_000


@dataclass
class Browser:
    """A signed-in browser: its cookies, and the CSRF token its pages carry (base.html's hx-headers)."""

    server: str
    session_id: str
    csrf_cookie: str
    token: str

    def chat(
        self, deployment_id: str, *, org: str | None = None, token: str | None = None,
        headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None,
    ) -> httpx.Response:  # fmt: skip
        prefix = f"/api/v1/orgs/{org}" if org else "/api/v1"
        sent = {"X-CSRFToken": self.token if token is None else token, "Origin": self.server, **(headers or {})}
        jar = {settings.SESSION_COOKIE_NAME: self.session_id, settings.CSRF_COOKIE_NAME: self.csrf_cookie}
        return httpx.post(f"{self.server}{prefix}/deployments/{deployment_id}/chat/completions", json=CHAT,
                          headers={k: v for k, v in sent.items() if v}, cookies={**jar, **(cookies or {})},
                          timeout=20)  # fmt: skip


def sign_in(server: str, user: User, org: Organization | None = None) -> Browser:
    client = Client()
    client.force_login(user)
    if org is not None:  # working in that org, as the org switcher sets it
        session = client.session
        session[SESSION_ORG_KEY] = org.pk
        session.save()
    session_id = client.cookies[settings.SESSION_COOKIE_NAME].value
    page = httpx.get(f"{server}/dashboard/", cookies={settings.SESSION_COOKIE_NAME: session_id})
    assert page.status_code == 200, page.status_code
    match = re.search(r'"X-CSRFToken": "([^"]+)"', page.text)
    assert match is not None
    return Browser(server, session_id, page.cookies[settings.CSRF_COOKIE_NAME], match[1])


def test_a_page_chat_is_served_by_the_gateway_and_metered(server: str, alice: Persona, engines: Engines) -> None:
    engine = engines()
    deployment = serving_deployment(alice, [engine])
    browser = sign_in(server, alice.user, alice.org)
    reply = browser.chat(deployment.pk)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "The quick brown"
    assert reply.json()["choices"][0]["logprobs"] is None  # repaired to OpenAI's shape by the gateway
    org_scoped = browser.chat(deployment.pk, org=alice.org.pk)
    assert org_scoped.status_code == 200, org_scoped.text
    total = counters(deployment.pk, at_least=2)
    assert (total["requests"], total["prompt_tokens"], total["completion_tokens"]) == (2, 2 * 6, 2 * 3)
    assert len(engine.engine.records) == 2


def test_a_page_chat_is_held_to_the_concurrency_limit(server: str, alice: Persona, engines: Engines) -> None:
    engine = engines()
    engine.engine.behaviour.gap_ms = 100
    deployment = serving_deployment(alice, [engine], concurrency_limit=1)
    browser = sign_in(server, alice.user, alice.org)
    statuses: list[int] = []
    refusals: list[httpx.Response] = []

    def call() -> None:
        response = browser.chat(deployment.pk)
        statuses.append(response.status_code)
        if response.status_code == 429:
            refusals.append(response)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 429, 429]
    assert refusals[0].headers["retry-after"] == "1"
    assert refusals[0].json()["error"]["code"] == "concurrency_limit_exceeded"
    assert len(engine.engine.records) == 1  # nothing forwarded for the refused ones
    assert counters(deployment.pk, at_least=3)["rejected"] == 2


def test_a_page_chat_wakes_a_cold_deployment(server: str, alice: Persona, launches: list[str]) -> None:  # noqa: F811
    fund(alice.org, 10 * USD)
    deployment = cold_deployment(alice)
    # Asked not to be held (issue 14: a cold request is held by default while a short wake runs).
    reply = sign_in(server, alice.user, alice.org).chat(deployment.pk, headers={"Prefer": "respond-async"})
    assert reply.status_code == 202, reply.text
    assert reply.json()["deployment_id"] == deployment.pk and 1 <= int(reply.headers["retry-after"]) <= 30
    deployment.refresh_from_db()
    assert (deployment.status, deployment.desired_replicas) == ("provisioning", 1)
    assert len(launches) == 1
    assert counters(deployment.pk, at_least=1)["rejected"] == 1


def test_without_a_valid_csrf_token_or_from_another_site_nothing_is_forwarded(
    server: str, alice: Persona, engines: Engines
) -> None:
    engine = engines()
    deployment = serving_deployment(alice, [engine])
    browser = sign_in(server, alice.user, alice.org)
    refused = {
        "no token": browser.chat(deployment.pk, token=""),
        "a wrong token": browser.chat(deployment.pk, token="x" * 64),
        "a token of another cookie": browser.chat(deployment.pk, cookies={settings.CSRF_COOKIE_NAME: "y" * 32}),
        "no csrf cookie": browser.chat(deployment.pk, cookies={settings.CSRF_COOKIE_NAME: ""}),
        "another site's origin": browser.chat(deployment.pk, headers={"Origin": "https://evil.example"}),
    }
    for why, response in refused.items():
        assert response.status_code == 403, (why, response.text)
        error = response.json()["error"]
        assert error["code"] == "csrf_failed" and error["message"].startswith("CSRF check failed"), why
    assert engine.engine.records == []
    assert Deployment.objects.get(pk=deployment.pk).status == "active"
    assert browser.chat(deployment.pk).status_code == 200  # the same browser, with its token: served


def test_over_https_a_session_chat_needs_an_origin_or_referer_of_this_site(alice: Persona, engines: Engines) -> None:
    engine = engines()
    deployment = serving_deployment(alice, [engine])
    client = Client()
    client.force_login(alice.user)
    session = client.session
    session[SESSION_ORG_KEY] = alice.org.pk
    session.save()
    token = "a" * 32  # an unmasked secret is a valid token for its own cookie (Django's rules)
    cookies = {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value,
               settings.CSRF_COOKIE_NAME: token}  # fmt: skip

    async def post(**headers: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=cast(Any, http_app))
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver", cookies=cookies) as http:
            try:
                return await http.post(f"/api/v1/deployments/{deployment.pk}/chat/completions", json=CHAT,
                                       headers={"X-CSRFToken": token, **headers})  # fmt: skip
            finally:
                await gateway_shutdown()

    sessions.cache_clear()
    bare = async_to_sync(post)()
    assert bare.status_code == 403 and "Referer" in bare.json()["error"]["message"], bare.text
    elsewhere = async_to_sync(post)(Referer="https://evil.example/page")
    assert elsewhere.status_code == 403, elsewhere.text
    assert engine.engine.records == []
    assert async_to_sync(post)(Referer=f"https://testserver/deployments/{deployment.pk}/").status_code == 200
    assert async_to_sync(post)(Origin="https://testserver").status_code == 200


def test_the_sessions_org_and_role_decide(
    server: str, alice: Persona, bob: Persona, charlie: Persona, engines: Engines
) -> None:
    engine = engines()
    deployment = serving_deployment(alice, [engine])
    stranger = sign_in(server, charlie.user).chat(deployment.pk)
    assert stranger.status_code == 404 and alice.org.name not in stranger.text
    assert sign_in(server, charlie.user).chat(deployment.pk, org=alice.org.pk).status_code == 404
    assert sign_in(server, bob.user, alice.org).chat(deployment.pk).status_code == 200  # a member may invoke
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    sessions.cache_clear()  # in the server's process a role change shows within SESSION_CACHE_SECONDS
    viewer = sign_in(server, bob.user, alice.org).chat(deployment.pk)
    assert viewer.status_code == 403 and "viewer" in viewer.json()["error"]["message"]
    assert len(engine.engine.records) == 1  # only the member's request reached the engine


def test_a_members_new_role_or_removal_shows_in_their_session_at_once(
    server: str, alice: Persona, bob: Persona, engines: Engines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions._cache, "ttl", 3600.0)  # nothing expires: the announcement alone does it
    deployment = serving_deployment(alice, [engines()])
    browser = sign_in(server, bob.user, alice.org)
    assert browser.chat(deployment.pk).status_code == 200
    owner = Principal(user=alice.user, org=alice.org, role=Role.OWNER)
    membership_role_set(principal=owner, user_id=bob.user.pk, role=Role.VIEWER)
    viewer = browser.chat(deployment.pk)
    assert viewer.status_code == 403 and "viewer" in viewer.json()["error"]["message"]
    membership_remove(principal=owner, user_id=bob.user.pk)
    assert browser.chat(deployment.pk).status_code == 404  # his session now acts in his own org


def test_without_a_live_session_it_is_401(server: str, alice: Persona, engines: Engines) -> None:
    engine = engines()
    deployment = serving_deployment(alice, [engine])
    browser = sign_in(server, alice.user, alice.org)
    path = f"{server}/api/v1/deployments/{deployment.pk}/chat/completions"
    assert httpx.post(path, json=CHAT).status_code == 401
    forged = browser.chat(deployment.pk, cookies={settings.SESSION_COOKIE_NAME: "nosuchsession"})
    assert forged.status_code == 401 and "sign in" in forged.json()["error"]["message"]
    signed_out = Client()
    signed_out.cookies[settings.SESSION_COOKIE_NAME] = browser.session_id
    assert signed_out.post("/accounts/logout/").status_code == 302
    sessions.cache_clear()
    assert browser.chat(deployment.pk).status_code == 401  # signed out
    assert engine.engine.records == []


def test_the_chat_operation_documents_both_auths_and_what_the_gateway_answers(client: Client, alice: Persona) -> None:
    schema = client.get("/api/v1/openapi.json").json()
    operation = schema["paths"]["/api/v1/deployments/{deployment_id}/chat/completions"]["post"]
    assert {scheme for option in operation["security"] for scheme in option} == {"InferenceKeyAuth", "SessionAuth"}
    assert sorted(operation["responses"], key=int) == [
        "200", "202", "400", "401", "402", "403", "404", "413", "422", "429", "500", "502", "503", "504",
    ]  # fmt: skip
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert set(operation["responses"]["202"]["headers"]) == {"Retry-After", "Location"}
    assert "X-CSRFToken" in operation["description"]
    # Django only documents it: reached without gpucloud.asgi in front, it says so.
    deployment = serving_deployment(alice, [])
    direct = client.post(f"/api/v1/deployments/{deployment.pk}/chat/completions", data=CHAT,
                         content_type="application/json", **alice.auth)  # fmt: skip
    assert direct.status_code == 503 and direct.json()["error"]["type"] == "gateway_required"
