"""A user deploys SmolLM2 on this machine's CPU, talks to it, deletes it; and every refusal
launches nothing and holds nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from billing.models import CreditHold, HoldStatus, LedgerTransaction, TransactionKind, UsageMeter
from billing.selectors import balance_of
from catalog.models import Provider
from deployments.models import Deployment, DeploymentEvent
from fleet.drivers import driver
from fleet.models import Instance
from fleet.offers import offers_refresh_all
from fleet.providers.base import ProviderError
from fleet.providers.local.driver import LocalDriver
from tests.support.billing import fund, ledger_snapshot
from tests.support.gateway import asgi_request
from tests.support.personas import Persona

USD = 1_000_000
SMOL = {"name": "chat", "model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local", "replicas": 1}


def create(client: Client, persona: Persona, capture: Any, **overrides: object) -> Any:
    with capture(execute=True):
        return client.post(
            "/api/v1/deployments", data=json.dumps({**SMOL, **overrides}), content_type="application/json",
            **persona.auth,
        )  # fmt: skip


def test_deploy_chat_delete(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    created = create(client, alice, django_capture_on_commit_callbacks)
    assert created.status_code == 201, created.content
    deployment_id = created.json()["id"]
    detail = client.get(f"/api/v1/deployments/{deployment_id}", **alice.auth).json()
    assert detail["status"] == "active", detail
    assert detail["instances"][0]["state"] == "ready" and detail["hourly_cost_usd"] == 0.05
    assert detail["kind"] == "model" and detail["idle_timeout_seconds"] == 900  # what runs it, and how it scales
    scaling = client.get(f"/api/v1/deployments/{deployment_id}/scaling", **alice.auth).json()
    assert detail["scaling"] == scaling and scaling["min_replicas"] == 1 and scaling["scale_to_zero"] is False
    assert [i.instance_id for i in driver("local").list_instances(fleet)] == [detail["instances"][0]["id"]]

    chat = asgi_request(  # the gateway serves the chat route (gpucloud/asgi.py)
        "POST",
        f"/api/v1/deployments/{deployment_id}/chat/completions",
        json={"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 12},
        headers={"Authorization": f"Bearer {alice.key}"},
        timeout=60,
    )
    assert chat.status_code == 200, chat.content
    assert chat.json()["choices"][0]["message"]["content"].strip()

    # A deployment key works for inference on this deployment only, and not on the management API.
    key_request = {"name": "customer", "kind": "deployment", "deployment_id": deployment_id}
    scoped = client.post(
        "/api/v1/api-keys", data=json.dumps(key_request), content_type="application/json", **alice.auth
    ).json()["key"]
    # Another deployment of the org, serving (the gateway routes only those; one it cannot route is a 404).
    other = Deployment.objects.create(org=alice.org, name="other", status="active")
    as_customer: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {scoped}"}
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    ok = asgi_request("POST", f"/api/v1/deployments/{deployment_id}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {scoped}"}, timeout=60)  # fmt: skip
    wrong = asgi_request("POST", f"/api/v1/deployments/{other.pk}/chat/completions", json=body,
                         headers={"Authorization": f"Bearer {scoped}"})  # fmt: skip
    assert ok.status_code == 200 and wrong.status_code == 403
    assert client.get(f"/api/v1/deployments/{deployment_id}", **as_customer).status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        deleted = client.delete(f"/api/v1/deployments/{deployment_id}", **alice.auth)
    assert deleted.status_code == 200
    assert client.get(f"/api/v1/deployments/{deployment_id}", **alice.auth).json()["status"] == "stopped"
    assert driver("local").list_instances(fleet) == []  # the engine process is gone

    instance = Instance.objects.get(deployment_id=deployment_id)
    meter = UsageMeter.objects.get(meter_key=instance.pk)
    assert meter.ended_at == instance.terminated_at and meter.billed_seconds >= 60
    assert meter.billed_micros == 50_000 * meter.billed_seconds // 3600
    hold = CreditHold.objects.get(idempotency_key=f"instance:{instance.pk}:first-minute")
    assert hold.status == HoldStatus.POSTED  # the first minute was the hold, posted by metering
    spent = 10 * USD - balance_of(alice.org).available_micros
    assert spent == meter.billed_micros and balance_of(alice.org).held_micros == 0
    states = list(DeploymentEvent.objects.filter(instance=instance).values_list("to_status", flat=True))
    assert states == ["loading", "ready", "terminating", "terminated"]
    events = client.get(f"/api/v1/deployments/{deployment_id}/events", **alice.auth).json()
    assert events[0]["to_status"] == "provisioning" and events[-1]["to_status"] == "stopped"


@pytest.mark.parametrize(
    ("overrides", "status", "param"),
    [
        ({"model_id": "gpt-9"}, 404, "model_id"),
        ({"model_id": "llama-3.3-70b-instruct"}, 400, "gpu_type"),  # 160 GB model on a CPU
        ({"gpu_type": "h100"}, 409, "region"),  # nobody offers an H100 here (an operator may connect one)
        ({"gpu_type": "tpu"}, 404, "gpu_type"),
        ({"region": "mars"}, 404, "region"),
        ({"replicas": 0}, 400, "replicas"),
        ({"replicas": 99}, 400, "replicas"),
    ],
)
def test_refusals_launch_nothing(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any,
    overrides: dict[str, object], status: int, param: str,
) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    before = ledger_snapshot()
    response = create(client, alice, django_capture_on_commit_callbacks, **overrides)
    assert response.status_code == status, response.content
    assert response.json()["error"]["param"] == param
    assert ledger_snapshot() == before and not Deployment.objects.exists() and not CreditHold.objects.exists()
    assert driver("local").list_instances(fleet) == []


def test_no_credit_is_402_and_launches_nothing(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    response = create(client, alice, django_capture_on_commit_callbacks)
    assert (
        response.status_code == 402
        and "ask the operator of this gpucloud for credit" in response.json()["error"]["message"]
    )
    fund(alice.org, 100)  # $0.0001: less than the first minute of two replicas
    response = create(client, alice, django_capture_on_commit_callbacks, replicas=2)
    assert response.status_code == 402 and not Deployment.objects.exists()
    assert driver("local").list_instances(fleet) == []
    assert not LedgerTransaction.objects.filter(kind=TransactionKind.HOLD).exists()


def test_another_orgs_deployment_is_404(
    client: Client, alice: Persona, charlie: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    deployment_id = create(client, alice, django_capture_on_commit_callbacks).json()["id"]
    for response in (
        client.get(f"/api/v1/deployments/{deployment_id}", **charlie.auth),
        client.delete(f"/api/v1/deployments/{deployment_id}", **charlie.auth),
        client.get(f"/api/v1/deployments/{deployment_id}/logs", **charlie.auth),
        asgi_request(  # the gateway serves the chat route (gpucloud/asgi.py)
            "POST",
            f"/api/v1/deployments/{deployment_id}/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},  # valid: the body is checked first
            headers={"Authorization": f"Bearer {charlie.key}"},
        ),
    ):
        assert response.status_code == 404
    assert Deployment.objects.get(pk=deployment_id).status == "active"
    logs = client.get(f"/api/v1/deployments/{deployment_id}/logs", **alice.auth).json()
    assert any("serving on" in line for line in logs[0]["lines"])


def test_gpu_model_configs(client: Client, alice: Persona, fleet: str) -> None:
    configs = client.get("/api/v1/gpu-model-configs", **alice.auth).json()
    smol_cpu = next(c for c in configs if c["model_id"] == "smollm2-135m-instruct" and c["gpu_type"] == "cpu")
    assert smol_cpu == {"model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "regions": ["local"],
                        "hourly_price_usd": 0.05}  # fmt: skip
    assert not any(c["model_id"] == "llama-3.3-70b-instruct" and c["gpu_type"] == "cpu" for c in configs)


def test_permanent_provider_error_fails_the_replica_with_its_reason(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:

    def refuse(*args: object) -> None:
        raise ProviderError("Image not found: registry said 404.", permanent=True)

    monkeypatch.setattr(LocalDriver, "launch", refuse)
    fund(alice.org, 10 * USD)
    deployment_id = create(client, alice, django_capture_on_commit_callbacks).json()["id"]
    detail = client.get(f"/api/v1/deployments/{deployment_id}", **alice.auth).json()
    assert detail["status"] == "failed" and detail["status_reason"] == "Image not found: registry said 404."
    assert detail["instances"][0]["failure_reason"] == "Image not found: registry said 404."
    assert balance_of(alice.org).available_micros == 10 * USD  # the first-minute hold went back


def test_no_capacity_falls_over_to_the_next_offer(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any, tmp_path: Any
) -> None:

    # Two providers offer cpu in local; the cheaper one is full, so the launch lands on the other.
    Provider.objects.filter(slug="local").update(
        config={"instances_dir": str(tmp_path / "a"), "slots": 0, "threads": 1, "price_per_hour_micros": 40_000}
    )
    Provider.objects.create(
        slug="local-b", name="Second box", driver="local",
        config={"instances_dir": str(tmp_path / "b"), "slots": 1, "threads": 1},
    )  # fmt: skip
    offers_refresh_all()
    fund(alice.org, 10 * USD)
    response = create(client, alice, django_capture_on_commit_callbacks)
    assert response.status_code == 201
    instance = Instance.objects.get(deployment_id=response.json()["id"])
    assert instance.provider == "local-b" and instance.state == "ready"
    assert (
        instance.hourly_price_micros == 50_000 == Deployment.objects.get(pk=instance.deployment_id).hourly_price_micros
    )
    driver("local-b").terminate(instance.provider_instance_id)
