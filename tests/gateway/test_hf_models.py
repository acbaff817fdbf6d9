"""Any Hugging Face model (reference/001 "Cold models"; GPUCLOUD_HF_MODELS): the first /v1 request
for an id not in the catalog holds the first minute, deploys it cold on the cheapest spot offer whose
GPU its size fits, and answers 202 deploying; once the engine is up it answers through /v1, is listed
to its org only, and 15 idle minutes terminate it. Refusals are 4xx in OpenAI's shape and change
nothing. The cloud is the sim cloud (tests/support/sim_cloud.py), whose machines run the engine
simulator."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from django.test import Client

from accounts.models import ApiKeyKind
from accounts.principal import Principal
from accounts.roles import Role
from accounts.services import api_key_create
from billing.metering import cost_micros
from billing.models import CreditHold, HoldStatus, LedgerTransaction
from catalog.models import CatalogModel
from deployments.models import Deployment, DeploymentKind, DeploymentStatus
from deployments.scaling import autoscaler
from fleet import tasks
from fleet.models import Instance, InstanceState
from fleet.providers.containers import VLLM_IMAGE, Images, container_run
from fleet.provisioning import first_minute_hold_key
from gateway import routing
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.pages import signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)  # the server thread must see committed rows
USD = 1_000_000
MODEL = "Qwen/Qwen2.5-14B-Instruct"  # 14 x 2 x 1.2 + 2 = 35.6: 36 GB
L40S_SPOT = 800_000  # 48 GB: the cheapest that fits
GPUS = {
    "rtx-4090": {"price": 300_000, "capacity": 2},  # cheaper, but 24 GB is too small
    "l40s": {"price": L40S_SPOT, "capacity": 2},
    "h100": {"price": 2_000_000, "capacity": 2},
}
ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def cloud(settings: Any) -> Iterator[str]:
    settings.GPUCLOUD_HF_MODELS = "Qwen,HuggingFaceTB"
    with sim_cloud.sole_provider(settings, GPUS, spot=True) as tag:
        yield tag


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Provisioning requests, recorded instead of run: the test launches them when it wants."""
    started: list[str] = []
    monkeypatch.setattr(tasks.instance_provision_task, "delay", lambda instance_id: started.append(instance_id))
    return started


def post(server: str, key: str, model: str = MODEL, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    return httpx.post(f"{server}/v1/chat/completions", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})})  # fmt: skip


def listed(server: str, key: str) -> list[tuple[str | None, str, str]]:
    """(deployment id, catalog_model, availability) of each deployment /v1/models lists to the key."""
    data = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    return [(m["deployment_id"], m["catalog_model"], m["availability"]) for m in data if m["deployment_id"]]


def nothing_happened() -> None:
    assert not Deployment.objects.exists() and not CatalogModel.objects.exclude(hf_id="").exists()
    assert not CreditHold.objects.exists() and not Instance.objects.exists()


def deploying(server: str, persona: Persona, launches: list[str]) -> Deployment:
    """The first request: 202 deploying, the deployment made and woken, its launch requested."""
    first = post(server, persona.key, headers=ASYNC)
    assert first.status_code == 202, first.text
    deployment = Deployment.objects.get(org=persona.org)
    assert first.headers["location"] == f"/v1/models/{deployment.pk}"
    assert 1 <= int(first.headers["retry-after"]) <= 30
    body = first.json()
    assert (body["status"], body["type"], body["deployment_id"]) == ("deploying", "model_deploying", deployment.pk)
    assert body["estimated_ready_seconds"] >= 1 and f"Model '{MODEL}' is being deployed" in body["message"]
    assert launches == [Instance.objects.get(deployment=deployment).pk]
    return deployment


def launch(launches: list[str]) -> Instance:
    """The provider's turn: the recorded launch runs (eagerly, through the engine's readiness)."""
    tasks.instance_provision_task.apply(args=[launches[0]])
    return Instance.objects.get(pk=launches[0])


def test_the_setting_off_refuses_with_a_403_naming_it_and_changes_nothing(
    server: str, alice: Persona, cloud: str, settings: Any, launches: list[str]
) -> None:
    settings.GPUCLOUD_HF_MODELS = "off"
    fund(alice.org, 10 * USD)
    ledger_rows = LedgerTransaction.objects.count()
    response = post(server, alice.key)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "hf_model_not_allowed", "model")
    assert "GPUCLOUD_HF_MODELS=off" in error["message"]
    nothing_happened()
    assert launches == [] and LedgerTransaction.objects.count() == ledger_rows


def test_a_first_request_holds_the_first_minute_deploys_on_the_cheapest_spot_gpu_that_fits_and_serves_once_ready(
    server: str, alice: Persona, bob: Persona, charlie: Persona, cloud: str, launches: list[str]
) -> None:
    fund(alice.org, 10 * USD)
    fund(charlie.org, 10 * USD)
    assert listed(server, alice.key) == []

    deployment = deploying(server, alice, launches)
    assert (deployment.kind, deployment.status, deployment.desired_replicas) == (
        DeploymentKind.SERVERLESS, DeploymentStatus.PROVISIONING, 1,
    )  # fmt: skip
    assert (deployment.gpu_type_id, deployment.region_id, deployment.spot) == ("l40s", "atl1", True)
    assert (deployment.scale_to_zero, deployment.min_replicas, deployment.idle_timeout_seconds) == (True, 0, 900)
    assert (deployment.name, deployment.hourly_price_micros) == (MODEL, L40S_SPOT)
    model = CatalogModel.objects.get(pk=deployment.model_id)
    assert (model.slug, model.hf_id, model.engine, model.engine_args) == (
        "hf-qwen--qwen2.5-14b-instruct", MODEL, "vllm", {"hf_repo": MODEL},
    )  # fmt: skip
    assert (model.category, model.min_vram_gb, model.parameters) == ("llm", 36, "14B")
    instance = Instance.objects.get(deployment=deployment)
    hold = CreditHold.objects.get(idempotency_key=first_minute_hold_key(instance.pk))
    assert (hold.status, hold.amount_micros, hold.org_id) == (HoldStatus.OPEN, cost_micros(L40S_SPOT, 60), alice.org.pk)

    again = post(server, bob.key, headers=ASYNC)  # bob, in alice's org: the same deployment, no second wake
    assert again.status_code == 202 and again.json()["deployment_id"] == deployment.pk
    assert Deployment.objects.count() == 1 and Instance.objects.count() == 1 and len(launches) == 1

    [(listed_id, catalog_model, availability)] = listed(server, alice.key)
    assert (listed_id, catalog_model, availability) == (deployment.pk, MODEL, "deploying")
    looked_up = httpx.get(f"{server}/v1/models/{MODEL}", headers={"Authorization": f"Bearer {alice.key}"}).json()
    assert looked_up["deployment_id"] == deployment.pk and looked_up["estimated_ready_seconds"] >= 1
    assert listed(server, charlie.key) == []  # another org does not see it

    instance = launch(launches)
    assert instance.state == InstanceState.READY and instance.spot
    spec = sim_cloud.LAUNCHED[instance.pk]
    assert (spec.engine, spec.model, spec.served_model_name, spec.gpu_type, spec.spot) == (
        "vllm", {"hf_repo": MODEL}, MODEL, "l40s", True,
    )  # fmt: skip
    run = container_run(spec, images=Images(), gpus=1, provider="vastai")  # what a GPU cloud's machine runs
    assert run.args[:4] == ["--model", MODEL, "--served-model-name", MODEL] and run.image == VLLM_IMAGE

    client = openai.OpenAI(base_url=f"{server}/v1", api_key=alice.key, max_retries=0, timeout=30)
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
        extra_headers={"X-Wait-For-Ready": "10"},  # the route cache may still say "deploying" for 2 s
    )  # fmt: skip
    assert reply.choices[0].message.content == "The quick"
    assert listed(server, alice.key) == [(deployment.pk, MODEL, "instant")]
    page = signed_in(alice).get(f"/deployments/{deployment.pk}/")
    assert page.status_code == 200 and MODEL in page.content.decode()
    assert listed(server, charlie.key) == []
    assert post(server, charlie.key, headers=ASYNC).status_code == 202  # charlie's own, on his own credit
    assert Deployment.objects.filter(org=charlie.org).count() == 1 and Deployment.objects.count() == 2


def test_fifteen_idle_minutes_terminate_it_and_the_next_request_wakes_it_again(
    server: str, alice: Persona, cloud: str, launches: list[str]
) -> None:
    fund(alice.org, 10 * USD)
    deployment = deploying(server, alice, launches)
    instance = launch(launches)
    assert post(server, alice.key, headers={"X-Wait-For-Ready": "10"}).status_code == 200
    assert len(sim_cloud.running(cloud)) == 1

    now = time.time()
    assert autoscaler.autoscale_round(now=now + 13 * 60) == {}  # 13 minutes: still up
    assert autoscaler.autoscale_round(now=now + 16 * 60 + 60) == {deployment.pk: 0}
    instance.refresh_from_db()
    deployment.refresh_from_db()
    assert instance.state == InstanceState.TERMINATED and sim_cloud.running(cloud) == []
    assert deployment.status == DeploymentStatus.SCALED_TO_ZERO
    assert listed(server, alice.key) == [(deployment.pk, MODEL, "cold")]

    routing.routes_clear()  # the fake clock moved 16 minutes; the gateway's 2-second route cache did not
    woken = post(server, alice.key, headers=ASYNC)  # the same deployment wakes, with a new first minute held
    assert woken.status_code == 202 and woken.json()["deployment_id"] == deployment.pk
    assert len(launches) == 2 and CreditHold.objects.filter(idempotency_key=first_minute_hold_key(launches[1])).exists()


@pytest.mark.parametrize(
    ("model", "status", "words"),
    [
        ("a/b/c", 400, "is not a Hugging Face model id"),
        ("Qwen/Qwen-Instruct", 400, "no size in its name"),
        ("Qwen/Qwen2.5-7B-Instruct-GGUF", 400, "GGUF"),
        ("meta-llama/Llama-3.1-8B-Instruct", 403, "not allowed on this platform (GPUCLOUD_HF_MODELS allows Qwen"),
        ("Qwen/Qwen2.5-72B-Instruct", 503, "No spot GPU with 175 GB"),  # bigger than any GPU offered
    ],
)
def test_ids_that_cannot_start_are_refused_and_change_nothing(
    server: str, alice: Persona, cloud: str, launches: list[str], model: str, status: int, words: str
) -> None:
    fund(alice.org, 10 * USD)
    response = post(server, alice.key, model=model)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert error["param"] == ("model" if status != 503 else None)
    assert response.headers.get("retry-after") == ("60" if status == 503 else None)
    nothing_happened()
    assert launches == []


def test_without_credit_it_is_402_and_nothing_is_made(
    server: str, alice: Persona, cloud: str, launches: list[str]
) -> None:
    response = post(server, alice.key)
    assert response.status_code == 402 and response.json()["error"]["code"] == "insufficient_balance"
    nothing_happened()


def test_after_a_failed_start_requests_start_nothing_until_it_is_deleted(
    server: str, alice: Persona, cloud: str, launches: list[str]
) -> None:
    fund(alice.org, 10 * USD)
    deployment = deploying(server, alice, launches)
    Instance.objects.filter(deployment=deployment).update(state=InstanceState.FAILED)
    Deployment.objects.filter(pk=deployment.pk).update(
        status=DeploymentStatus.FAILED, status_reason="Repository Not Found for url: https://huggingface.co/..."
    )
    routing.routes_clear()  # it failed minutes later, not within the gateway's 2-second route cache
    refused = post(server, alice.key, headers=ASYNC)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "deployment_failed" and "Repository Not Found" in error["message"]
    assert f"DELETE /api/v1/deployments/{deployment.pk}" in error["message"]
    assert Deployment.objects.count() == 1 and len(launches) == 1

    deleted = Client().delete(f"/api/v1/deployments/{deployment.pk}", **alice.auth)
    assert deleted.status_code == 200, deleted.content
    again = post(server, alice.key, headers=ASYNC)
    assert again.status_code == 202 and again.json()["deployment_id"] != deployment.pk
    assert Deployment.objects.count() == 2 and len(launches) == 2


def test_a_scoped_key_cannot_start_one(server: str, alice: Persona, cloud: str, launches: list[str]) -> None:
    fund(alice.org, 10 * USD)
    owner = Principal(user=alice.user, org=alice.org, role=Role.OWNER)
    _, scoped = api_key_create(principal=owner, name="scoped", kind=ApiKeyKind.ACCOUNT, scoped=True)
    response = post(server, scoped)
    assert response.status_code == 403 and "deploy 'Qwen/Qwen2.5-14B-Instruct' with an account key" in response.text
    nothing_happened()


def test_first_requests_at_once_make_one_deployment(
    server: str, alice: Persona, cloud: str, launches: list[str]
) -> None:
    fund(alice.org, 10 * USD)
    answers: list[int] = []
    threads = [threading.Thread(target=lambda: answers.append(post(server, alice.key, headers=ASYNC).status_code))
               for _ in range(4)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [202] * 4
    assert Deployment.objects.count() == 1 and Instance.objects.count() == 1 and len(launches) == 1


def test_the_rest_api_deploys_an_id_explicitly_and_the_catalog_does_not_list_it(
    alice: Persona, cloud: str, settings: Any, launches: list[str]
) -> None:
    """POST /api/v1/deployments with an HF id: a size-less one runs on the GPU chosen; the local
    provider (llama.cpp on CPU) is refused. The catalog's API shows curated models only."""
    fund(alice.org, 10 * USD)
    client = Client()

    def create(**body: Any) -> Any:
        body = {"model_id": "Qwen/Qwen-Instruct", "gpu_type": "l40s", "region": "atl1", "spot": True, **body}
        return client.post("/api/v1/deployments", data=json.dumps(body), content_type="application/json",
                           **alice.auth)  # fmt: skip

    on_cpu = create(gpu_type="cpu", region="local")
    assert on_cpu.status_code == 400 and "needs a GPU" in on_cpu.json()["error"]["message"]
    too_small = create(model_id="Qwen/Qwen2.5-14B-Instruct", gpu_type="rtx-4090")
    assert too_small.status_code == 400 and "needs 36 GB of VRAM" in too_small.json()["error"]["message"]
    assert create(model_id="a/b/c").json()["error"]["param"] == "model_id"
    nothing_happened()

    created = create()
    assert created.status_code == 201, created.content
    deployment = Deployment.objects.get(pk=created.json()["id"])
    assert (deployment.model_id, deployment.gpu_type_id, deployment.spot) == ("hf-qwen--qwen-instruct", "l40s", True)
    assert CatalogModel.objects.get(pk="hf-qwen--qwen-instruct").min_vram_gb == 0  # no size: the GPU chosen is trusted
    slugs = [m["slug"] for m in client.get("/api/v1/models", **alice.auth).json()]
    assert slugs and not any(s.startswith("hf-") for s in slugs)
    assert client.get("/api/v1/models/hf-qwen--qwen-instruct", **alice.auth).status_code == 404
    pages = signed_in(alice)
    catalog_page = pages.get("/catalog/").content.decode()
    assert "Llama 3.1 8B Instruct" in catalog_page and "Qwen/Qwen-Instruct" not in catalog_page
    assert pages.get("/catalog/hf-qwen--qwen-instruct/").status_code == 404

    settings.GPUCLOUD_HF_MODELS = "off"
    refused = create()
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "hf_model_not_allowed"
    assert create(model_id="hf-qwen--qwen-instruct").status_code == 403  # its row's slug: the same rule
    assert Deployment.objects.count() == 1


def test_the_hub_id_of_a_catalog_model_deploys_and_reaches_the_catalog_model(
    server: str, alice: Persona, cloud: str, settings: Any, launches: list[str]
) -> None:
    """`meta-llama/Llama-3.1-8B-Instruct` is the catalog's llama-3.1-8b-instruct (its engine's hf_repo):
    the first request deploys that catalog model (no row of its own), the next ones reach it."""
    settings.GPUCLOUD_HF_MODELS = "meta-llama"
    fund(alice.org, 10 * USD)
    hub_id = "meta-llama/Llama-3.1-8B-Instruct"
    first = post(server, alice.key, model=hub_id, headers=ASYNC)
    assert first.status_code == 202, first.text
    deployment = Deployment.objects.get(org=alice.org)
    assert (deployment.model_id, deployment.gpu_type_id, deployment.spot) == ("llama-3.1-8b-instruct", "rtx-4090", True)
    assert not CatalogModel.objects.exclude(hf_id="").exists()  # no Hugging Face row for a catalog model
    again = post(server, alice.key, model=hub_id.lower(), headers=ASYNC)
    assert again.status_code == 202 and again.json()["deployment_id"] == deployment.pk
    assert Deployment.objects.count() == 1 and len(launches) == 1
