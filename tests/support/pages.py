"""The pages as a signed-in browser sees them, and a running deployment to show on them."""

from __future__ import annotations

from django.test import Client
from django.utils import timezone

from accounts.auth import SESSION_ORG_KEY
from billing.models import Service, UsageMeter
from deployments.models import Deployment, DeploymentEvent, DeploymentKind, Pod, Volume
from fleet.models import Instance, InstanceState
from tests.support.personas import Persona


def running(persona: Persona, name: str = "chat", replicas: int = 1) -> Deployment:
    deployment = Deployment.objects.create(
        org=persona.org, name=name, status="active", model_id="smollm2-135m-instruct", gpu_type_id="cpu",
        region_id="local", desired_replicas=replicas, hourly_price_micros=3_600_000, started_at=timezone.now(),
    )  # fmt: skip
    for _ in range(replicas):
        instance = Instance.objects.create(
            deployment=deployment, state=InstanceState.READY, provider="local", provider_instance_id="p",
            tag="t", api_key="k", endpoint_url="http://127.0.0.1:1", hourly_price_micros=3_600_000,
            launched_at=timezone.now(), ready_at=timezone.now(),
        )  # fmt: skip
        UsageMeter.objects.create(
            org=persona.org, meter_key=instance.pk, service=Service.MODEL, description="x",
            hourly_price_micros=3_600_000, started_at=timezone.now(), billed_seconds=120, billed_micros=120_000,
        )  # fmt: skip
    DeploymentEvent.objects.create(deployment=deployment, from_status="provisioning", to_status="active",
                                   reason="Engine healthy.")  # fmt: skip
    return deployment


def signed_in(persona: Persona) -> Client:
    """A browser session of the persona, working in the persona's org."""
    client = Client()
    client.force_login(persona.user)
    session = client.session
    session[SESSION_ORG_KEY] = persona.org.pk
    session.save()
    return client


def session_of(persona: Persona) -> str:
    return str(signed_in(persona).cookies["sessionid"].value)


def running_pod(persona: Persona, name: str = "box", *, volume_gb: int | None = None) -> Deployment:
    """A running pod on the local provider (its machine ready and billed), with a volume of
    `volume_gb` when given, as its page and the lists show it; nothing is launched."""
    deployment = running(persona, name)
    Deployment.objects.filter(pk=deployment.pk).update(kind=DeploymentKind.POD, model=None)
    volume = None
    if volume_gb is not None:
        volume = Volume.objects.create(
            org=persona.org, name=f"{name} volume", size_gb=volume_gb, region_id="local", provider="local", tag="t",
            status="available", hourly_price_micros=volume_gb * 274,
        )  # fmt: skip
    Pod.objects.create(deployment=deployment, image="gpucloud/shell", ports=["8888/http", "22/tcp"],
                       env={"SECRET_TOKEN": "hunter2"}, command=["sleep", "600"], volume=volume)  # fmt: skip
    return Deployment.objects.select_related("pod").get(pk=deployment.pk)
