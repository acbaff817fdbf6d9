"""Cold starts through the gateway (reference/001, issue 14): a request to a deployment scaled to
zero holds the minimum session cost and starts the wake; it is held and served once a replica is
ready when the wake is expected within the deployment's `cold_start_wait_seconds` (default 60), so
the unchanged OpenAI SDK gets its answer; with `Prefer: respond-async`, or a longer expected wake,
it answers 202 + Retry-After + Location at once; X-Wait-For-Ready sets the hold explicitly; without
credit, 402 and nothing changes."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.auth import SESSION_ORG_KEY
from billing.models import CreditHold, HoldStatus
from deployments.models import Deployment, DeploymentKind
from examples.cold_start import create_when_ready
from fleet import tasks
from fleet.models import Instance, InstanceState
from fleet.provisioning import first_minute_hold_key
from tests.fakes.engine_server import EngineThread
from tests.support.billing import fund, ledger_snapshot
from tests.support.gateway import counters, serving_deployment
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)
USD = 1_000_000
BODY = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Provisioning requests, recorded instead of run: the test plays the provider."""

    started: list[str] = []
    monkeypatch.setattr(tasks.instance_provision_task, "delay", lambda instance_id: started.append(instance_id))
    return started


def cold_deployment(persona: Persona) -> Deployment:
    deployment = serving_deployment(persona, [], status="scaled_to_zero")
    Deployment.objects.filter(pk=deployment.pk).update(desired_replicas=0)
    return deployment


def provider_brings_up(launches: list[str], engine: EngineThread, *, after: float) -> threading.Thread:
    """Play the provider: once a launch is requested, the engine loads for `after` seconds and
    the instance becomes ready, served by the simulator."""

    def bring_up() -> None:
        deadline = time.monotonic() + 10
        while not launches and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(after)
        Instance.objects.filter(pk=launches[0]).update(
            state=InstanceState.READY, endpoint_url=engine.url, api_key="engine-secret",
            launched_at=timezone.now(), ready_at=timezone.now(),
        )  # fmt: skip
        connection.close()  # this thread's own connection

    thread = threading.Thread(target=bring_up)
    thread.start()
    return thread


def post(server: str, key: str, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server}/v1/chat/completions", json=BODY, timeout=30,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})}, **kwargs)  # fmt: skip


def test_a_cold_request_that_prefers_async_holds_the_first_minute_wakes_once_and_answers_202(
    server: str, alice: Persona, launches: list[str]
) -> None:
    fund(alice.org, 10 * USD)
    deployment = cold_deployment(alice)
    listed = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {alice.key}"}).json()
    deployed = [(m["id"], m["catalog_model"], m["availability"]) for m in listed["data"] if m["deployment_id"]]
    assert deployed == [(deployment.pk, "smollm2-135m-instruct", "cold")]

    first = post(server, alice.key, ASYNC)
    assert first.status_code == 202
    assert first.headers["location"] == f"/v1/models/{deployment.pk}"
    assert 1 <= int(first.headers["retry-after"]) <= 30
    body = first.json()
    assert body["status"] == "deploying" and body["type"] == "model_deploying"
    assert body["deployment_id"] == deployment.pk and body["estimated_ready_seconds"] >= 1
    assert "being deployed" in body["message"]

    deployment.refresh_from_db()
    assert (deployment.status, deployment.desired_replicas) == ("provisioning", 1)
    instance = Instance.objects.get(deployment=deployment)
    assert launches == [instance.pk]
    hold = CreditHold.objects.get(idempotency_key=first_minute_hold_key(instance.pk))
    assert (hold.status, hold.amount_micros) == (HoldStatus.OPEN, 60_000)  # 60 s at $3.60/h

    again = post(
        server, alice.key, {"Prefer": "wait=5, respond-async"}
    )  # waking already: no second replica, no second hold
    assert again.status_code == 202
    assert Instance.objects.filter(deployment=deployment).count() == 1 and len(launches) == 1

    status = httpx.get(f"{server}{first.headers['location']}", headers={"Authorization": f"Bearer {alice.key}"})
    assert status.json()["availability"] == "deploying" and status.json()["estimated_ready_seconds"] >= 1
    assert counters(deployment.pk, at_least=2)["rejected"] == 2


def test_wait_for_ready_holds_the_request_and_serves_it_when_a_replica_is_ready(
    server: str, alice: Persona, launches: list[str], engines: Callable[[], EngineThread]
) -> None:
    fund(alice.org, 10 * USD)
    deployment = cold_deployment(alice)
    engine = engines()

    provider = provider_brings_up(launches, engine, after=1.0)
    started = time.monotonic()
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=alice.key, max_retries=0, timeout=30)
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=2,
        extra_headers={"X-Wait-For-Ready": "20"},
    )  # fmt: skip
    provider.join()
    assert reply.choices[0].message.content == "The quick"
    assert time.monotonic() - started >= 1.0  # it was held, not refused
    assert len(engine.engine.records) == 1
    assert Instance.objects.filter(deployment=deployment).count() == 1


def test_a_wait_that_runs_out_answers_202(server: str, alice: Persona, launches: list[str]) -> None:
    fund(alice.org, 10 * USD)
    cold_deployment(alice)
    started = time.monotonic()
    response = post(server, alice.key, {"X-Wait-For-Ready": "1.5"})
    assert response.status_code == 202 and response.json()["type"] == "model_deploying"
    assert 1.4 <= time.monotonic() - started < 10


@pytest.mark.parametrize("value", ["-1", "601", "soon"])
def test_a_bad_wait_header_is_400_and_wakes_nothing(
    server: str, alice: Persona, launches: list[str], value: str
) -> None:
    fund(alice.org, 10 * USD)
    deployment = serving_deployment(alice, [], status="provisioning")
    response = post(server, alice.key, {"X-Wait-For-Ready": value})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "X-Wait-For-Ready"
    assert launches == [] and not Instance.objects.filter(deployment=deployment).exists()


def test_waking_without_credit_is_402_and_changes_nothing(server: str, alice: Persona, launches: list[str]) -> None:
    deployment = cold_deployment(alice)  # alice has $0
    before = ledger_snapshot()
    response = post(server, alice.key)
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_balance")
    assert "ask the operator of this gpucloud for credit" in error["message"]  # no card payments in tests
    deployment.refresh_from_db()
    assert (deployment.status, deployment.desired_replicas) == ("scaled_to_zero", 0)
    assert not Instance.objects.filter(deployment=deployment).exists() and launches == []
    assert ledger_snapshot() == before
    with pytest.raises(openai.APIStatusError) as refused:  # the SDK does not retry a 402
        openai.OpenAI(base_url=f"{server}/v1", api_key=alice.key, max_retries=2).chat.completions.create(
            model="smollm2-135m-instruct", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.status_code == 402


def test_the_readme_retry_helper_rides_out_a_cold_start(
    server: str, alice: Persona, launches: list[str], engines: Callable[[], EngineThread], settings: Any
) -> None:

    settings.GPUCLOUD_READY_ESTIMATE_LOCAL_SECONDS = 1  # Retry-After: 1
    fund(alice.org, 10 * USD)
    deployment = cold_deployment(alice)
    Deployment.objects.filter(pk=deployment.pk).update(cold_start_wait_seconds=0)  # never held: 202 at once
    engine = engines()

    provider = provider_brings_up(launches, engine, after=1.5)
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=alice.key, max_retries=0, timeout=30)
    reply = create_when_ready(client, max_wait=20, model="smollm2-135m-instruct",
                              messages=[{"role": "user", "content": "hi"}], max_tokens=2)  # fmt: skip
    provider.join()
    assert reply.choices[0].message.content == "The quick"
    assert counters(deployment.pk, at_least=2)["rejected"] >= 1  # it saw a 202 first


def test_the_unchanged_sdk_is_held_through_a_short_wake_and_served(
    server: str, alice: Persona, launches: list[str], engines: Callable[[], EngineThread]
) -> None:
    fund(alice.org, 10 * USD)
    deployment = cold_deployment(alice)  # cold_start_wait_seconds: 60 by default; the local estimate 15 s
    engine = engines()
    provider = provider_brings_up(launches, engine, after=1.0)
    started = time.monotonic()
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=alice.key, max_retries=0, timeout=30)
    reply = client.chat.completions.create(
        model=deployment.pk, messages=[{"role": "user", "content": "hi"}], max_tokens=2
    )  # no header of any kind
    provider.join()
    assert reply.choices[0].message.content == "The quick"
    assert time.monotonic() - started >= 1.0
    assert len(engine.engine.records) == 1 and len(launches) == 1
    assert CreditHold.objects.filter(idempotency_key=first_minute_hold_key(launches[0])).exists()
    assert counters(deployment.pk, at_least=1).get("rejected", 0) == 0


def test_a_wake_expected_longer_than_the_bound_answers_202_at_once(
    server: str, alice: Persona, launches: list[str], settings: Any
) -> None:
    settings.GPUCLOUD_READY_ESTIMATE_LOCAL_SECONDS = 30
    fund(alice.org, 10 * USD)
    deployment = cold_deployment(alice)
    Deployment.objects.filter(pk=deployment.pk).update(cold_start_wait_seconds=20)
    started = time.monotonic()
    response = post(server, alice.key)
    assert time.monotonic() - started < 5
    assert response.status_code == 202 and response.json()["estimated_ready_seconds"] >= 20
    assert response.headers["location"] == f"/v1/models/{deployment.pk}"
    assert len(launches) == 1  # woken all the same


def test_a_hold_that_runs_out_answers_202(server: str, alice: Persona, launches: list[str]) -> None:
    fund(alice.org, 10 * USD)
    deployment = cold_deployment(alice)
    Deployment.objects.filter(pk=deployment.pk).update(cold_start_wait_seconds=2)
    started = time.monotonic()
    response = post(server, alice.key)  # the local estimate (15 s) is over 2 s: not held at all
    assert response.status_code == 202 and time.monotonic() - started < 2
    settings_hold = post(server, alice.key, {"X-Wait-For-Ready": "1"})  # explicit: held, then 202
    assert settings_hold.status_code == 202 and time.monotonic() - started >= 1.0


def test_a_wake_that_waits_for_capacity_answers_202_at_once_not_after_the_hold(
    server: str, alice: Persona, launches: list[str]
) -> None:
    """The provider is full: the wake's replica waits for capacity with no time to promise, so the
    request is not held for its 60 s but answered 202 saying so; an explicit wait is still honoured."""
    fund(alice.org, 10 * USD)
    deployment = cold_deployment(alice)
    first = post(server, alice.key, ASYNC)  # wakes it
    assert first.status_code == 202 and len(launches) == 1
    Instance.objects.filter(pk=launches[0]).update(state=InstanceState.WAITING_FOR_CAPACITY)
    started = time.monotonic()
    response = post(server, alice.key)
    assert response.status_code == 202 and time.monotonic() - started < 5, response.text
    assert "waiting for a provider with free capacity" in response.json()["message"]
    assert response.headers["retry-after"] == "30" and response.json()["deployment_id"] == deployment.pk
    patient = post(server, alice.key, {"X-Wait-For-Ready": "1.5"})
    assert patient.status_code == 202 and time.monotonic() - started >= 1.4


def quick_start_from_the_page(server: str, persona: Persona, deployment: Deployment) -> str:
    """The Python snippet as the signed-in owner sees it on the deployment's page, served by the
    platform itself, after creating a deployment key there (the page fills the key in)."""
    client = Client()
    client.force_login(persona.user)
    session = client.session
    session[SESSION_ORG_KEY] = persona.org.pk  # working in that org, as the org switcher sets it
    session.save()
    cookies = {django_settings.SESSION_COOKIE_NAME: client.cookies[django_settings.SESSION_COOKIE_NAME].value}
    page = httpx.get(f"{server}/deployments/{deployment.pk}/", cookies=cookies)
    token = re.search(r'"X-CSRFToken": "([^"]+)"', page.text)
    assert page.status_code == 200 and token is not None
    cookies[django_settings.CSRF_COOKIE_NAME] = page.cookies[django_settings.CSRF_COOKIE_NAME]
    with_key = httpx.post(
        f"{server}/deployments/{deployment.pk}/key",
        data={"csrfmiddlewaretoken": token[1]},
        cookies=cookies,
        headers={"Origin": server, "Referer": f"{server}/deployments/{deployment.pk}/"},
        follow_redirects=True,
    )  # fmt: skip  (post/redirect/get: the page the key's POST redirects to shows its secret once)
    assert with_key.status_code == 200 and with_key.history[0].status_code == 302, with_key.text[:500]
    snippet = re.search(r'<code id="snippet-python">(.*?)</code>', with_key.text, re.S)
    assert snippet is not None
    return html.unescape(snippet[1])


def test_the_pages_own_python_quick_start_run_unchanged_gets_a_reply_from_a_cold_serverless_deployment(
    server: str, alice: Persona, launches: list[str], engines: Callable[[], EngineThread]
) -> None:
    fund(alice.org, 10 * USD)
    dedicated_engine = engines()
    serving_deployment(alice, [dedicated_engine])  # the same model, ready: it must not answer
    serverless = serving_deployment(alice, [], kind=DeploymentKind.SERVERLESS, status="scaled_to_zero")
    Deployment.objects.filter(pk=serverless.pk).update(desired_replicas=0)
    code = quick_start_from_the_page(server, alice, serverless)
    assert f'base_url="{server}/v1"' in code and f'model="{serverless.pk}"' in code

    engine = engines()
    provider = provider_brings_up(launches, engine, after=1.0)  # the engine loads for 1 s
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    provider.join()
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("The quick"), run.stdout  # the simulator's words, printed by the snippet
    assert len(engine.engine.records) == 1 and dedicated_engine.engine.records == []
    assert 1.0 <= took < 30
    print(f"cold quick-start: reply after {took:.2f} s (engine load 1.0 s)")
