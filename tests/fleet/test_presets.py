"""Presets at creation (reference/000): a deployment may take a preset, which must run on its own GPU
class; its engine configuration overrides the model's in what the provider launches, and vLLM on
Kubernetes gets it as flags. Refusals say why and create nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django.utils.html import escape

from deployments.models import Deployment
from deployments.workload import DeploymentWorkload
from fleet.models import Instance
from fleet.providers.kubernetes.manifests import engine_run
from fleet.providers.kubernetes.options import NVIDIA_GPU, DriverOptions
from tests.support.billing import fund, ledger_snapshot
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000


@pytest.mark.parametrize(
    ("preset", "says"),
    [
        ("speed", "The Speed preset runs on NVIDIA H100; choose that GPU or no preset."),
        ("turbo", "Unknown preset 'turbo'; use one of balanced, cost, latency, speed, or none."),
    ],
)
def test_a_preset_off_its_gpu_or_unknown_is_refused_and_creates_nothing(
    client: Client, alice: Persona, fleet: str, preset: str, says: str
) -> None:
    fund(alice.org, 5 * USD)
    before = ledger_snapshot()
    body = {"model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local", "preset": preset}
    response = client.post("/api/v1/deployments", data=json.dumps(body), content_type="application/json",
                           **alice.auth)  # fmt: skip
    assert response.status_code == 400
    assert (response.json()["error"]["message"], response.json()["error"]["param"]) == (says, "preset")
    page = Client()
    page.force_login(alice.user)
    form = page.post("/catalog/smollm2-135m-instruct/deploy", {"placement": "cpu@local", "replicas": 1,
                                                               "preset": preset})  # fmt: skip
    assert form.status_code == 400 and f'id="preset-error" role="alert">{escape(says)}<' in form.content.decode()
    assert not Deployment.objects.exists() and ledger_snapshot() == before


def test_the_presets_engine_configuration_reaches_the_engine(alice: Persona, catalog: None) -> None:
    deployment = Deployment.objects.create(
        org=alice.org, name="fast", model_id="llama-3.1-8b-instruct", gpu_type_id="h100", region_id="atl1",
        preset_id="speed", hourly_price_micros=1,
    )  # fmt: skip
    instance = Instance.objects.create(deployment=deployment, tag="t", api_key="k", hourly_price_micros=1,
                                       created_at=timezone.now())  # fmt: skip
    spec = DeploymentWorkload().instance_spec(
        Instance.objects.select_related("deployment__preset", "deployment__model").get(pk=instance.pk)
    )
    assert spec.engine_args["dtype"] == "float16" and spec.engine_args["max_num_seqs"] == 256
    args: list[Any] = engine_run(spec, DriverOptions(), gpus=1, gpu_resource=NVIDIA_GPU).args
    assert args[args.index("--dtype") + 1] == "float16"
    assert args[args.index("--max-num-seqs") + 1] == "256"
    deployment.preset_id = "cost"
    deployment.save()
    cost = DeploymentWorkload().instance_spec(
        Instance.objects.select_related("deployment__preset", "deployment__model").get(pk=instance.pk)
    )
    cost_args = engine_run(cost, DriverOptions(), gpus=1, gpu_resource=NVIDIA_GPU).args
    assert cost_args[cost_args.index("--quantization") + 1] == "fp8"  # 8-bit weights, as vLLM quantizes on load
