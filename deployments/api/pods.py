"""REST endpoints of pods (reference/003's custom pods): /api/v1/pods."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.http import HttpRequest
from ninja import Router, Status

from accounts.auth import api_principal
from accounts.roles import CAN_READ, CAN_WRITE, role_at_least
from deployments import pods, schemas, selectors
from deployments.models import Deployment, Pod
from deployments.pod_access import pod_addresses
from deployments.pod_settings import NewVolume
from deployments.pod_templates import pod_settings_of
from fleet.models import Instance
from gpucloud.core.errors import answers
from gpucloud.core.money import MICROS_PER_USD

router = Router(tags=["pods"])


def pod_out(request: HttpRequest, deployment: Deployment) -> dict[str, object]:
    pod = deployment.pod
    row = selectors.deployment_row(deployment)
    machine = deployment.instances.order_by("-created_at", "-pk").first()
    return {
        "id": deployment.pk,
        "name": deployment.name,
        "status": pod.status,
        "status_reason": deployment.status_reason or None,
        "image": pod.image,
        "gpu_type": deployment.gpu_type_id,
        "gpu_count": pod.gpu_count,
        "region": deployment.region_id,
        "cloud_type": deployment.cloud_type,
        "spot": deployment.spot,
        "max_price_per_hour_usd": pod.max_price_micros / MICROS_PER_USD if pod.max_price_micros else None,
        "container_disk_gb": pod.container_disk_gb,
        "ports": pod.ports,
        "env": pod.env,
        "command": pod.command,
        "args": pod.args,
        "ssh_public_keys": pod.ssh_public_keys,
        "volume": _volume_out(pod),
        "hourly_cost_usd": row.hourly_cost_micros / MICROS_PER_USD,
        "total_cost_usd": row.total_cost_micros / MICROS_PER_USD,
        "created_at": deployment.created_at,
        "stopped_at": deployment.stopped_at,
        "idle_timeout_minutes": pod.idle_timeout_minutes,
        "machine": _machine_out(machine) if machine else None,
        "template": pod.template or None,
        "connect": _connect_out(request, deployment),
    }


def _connect_out(request: HttpRequest, deployment: Deployment) -> dict[str, object]:
    pod = deployment.pod
    may_change = role_at_least(api_principal(request).role, CAN_WRITE)
    addresses = pod_addresses(deployment)
    direct = addresses.direct if may_change else {}  # an address past the proxy: for members who may use it
    return {
        "http": [
            {
                "port": port,
                "url": request.build_absolute_uri(f"/pods/{deployment.pk}/ports/{port}/"),
                "direct_url": direct.get(port),
            }
            for port in pod.port_numbers("http")
        ],
        "proxy_token": pod.proxy_token if may_change else None,
        "ssh": dataclasses.asdict(ssh) | {"command": ssh.command} if (ssh := addresses.ssh) else None,
    }


def _volume_out(pod: Pod) -> dict[str, object] | None:
    volume = pod.volume
    if volume is None:
        return None
    return {"id": volume.pk, "name": volume.name, "size_gb": volume.size_gb, "status": volume.status,
            "mount_path": pod.volume_mount_path}  # fmt: skip


def _machine_out(machine: Instance) -> dict[str, object]:
    return {
        "id": machine.pk,
        "state": machine.state,
        "provider": machine.provider or None,
        "cloud_type": machine.tier or None,
        "spot": machine.spot,
        "hourly_price_usd": machine.hourly_price_micros / MICROS_PER_USD,
        "launched_at": machine.launched_at,
        "terminated_at": machine.terminated_at,
        "failure_reason": machine.failure_reason or None,
    }


@router.get("/pods", response=list[schemas.PodOut], summary="Your pods (terminated ones left out)")
def pods_list(request: HttpRequest) -> list[dict[str, object]]:
    principal = api_principal(request)
    principal.require(CAN_READ, "listing pods")
    return [pod_out(request, d) for d in selectors.pods_of(principal.org)]


@router.post(
    "/pods",
    response={201: schemas.PodOut},
    summary="Create a pod",
    description="Holds its first minute (402 when the credit is short) and launches it after the answer. 400 for "
    "settings that cannot run (with the field in `param`), 404 for an unknown template, GPU type, region or volume, "
    "409 `no_capacity` when no provider offers the GPU there on the terms asked (or none is free now), 409 when "
    "the volume is in use by another running pod. With `template`, the template's settings are the defaults and "
    "each field the body gives wins (see `template`). While its volume's provider has no room for the volume, the "
    "pod stays provisioning (nothing billed), `status_reason` saying so, and launches once the volume is made.",
)
@answers(400, 402, 404, 409)
def pods_create(request: HttpRequest, payload: schemas.PodCreateIn) -> Status[dict[str, object]]:
    principal = api_principal(request)
    template = (
        selectors.template_get_for_org(principal.org, payload.template, param="template") if payload.template else None
    )
    deployment = pods.pod_create(principal=principal, asked=pod_settings_of(template, _given(payload)))
    return Status(201, pod_out(request, selectors.pod_get_for_org(deployment.org, deployment.pk)))


def _given(payload: schemas.PodCreateIn) -> dict[str, Any]:
    """The PodSettings fields the body set (a template fills the others; else their defaults)."""
    given = {name: getattr(payload, name) for name in payload.model_fields_set - {"template"}}
    if "max_price_per_hour_usd" in given:
        usd = given.pop("max_price_per_hour_usd")
        given["max_price_micros"] = round(usd * MICROS_PER_USD) if usd is not None else None
    if "volume" in given:
        volume = given.pop("volume")
        given["new_volume"] = NewVolume(size_gb=volume.size_gb, name=volume.name) if volume else None
    return given


@router.get("/pods/{pod_id}", response=schemas.PodOut, summary="One pod (a terminated one too)")
def pods_get(request: HttpRequest, pod_id: str) -> dict[str, object]:
    principal = api_principal(request)
    principal.require(CAN_READ, "reading pods")
    return pod_out(request, selectors.pod_get_for_org(principal.org, pod_id))


@router.post(
    "/pods/{pod_id}/stop",
    response=schemas.PodOut,
    summary="Stop a pod: its machine goes, its volume stays",
    description="Billing for the machine stops when its provider confirms; stopping a stopped pod answers the "
    "same. 409 for a terminated pod.",
)
@answers(409)
def pods_stop(request: HttpRequest, pod_id: str) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.pod_get_for_org(principal.org, pod_id)
    pods.pod_stop(principal=principal, deployment=deployment)
    return pod_out(request, selectors.pod_get_for_org(principal.org, pod_id))


@router.post(
    "/pods/{pod_id}/start",
    response=schemas.PodOut,
    summary="Start a stopped pod again",
    description="The same image and settings, on an offer of its GPU type where its volume lives. 402 when the "
    "credit is short; 409 unless it is stopped, when its volume is in use by another pod, or `no_capacity` "
    "when no such offer is free now (it stays stopped).",
)
@answers(402, 409)
def pods_start(request: HttpRequest, pod_id: str) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.pod_get_for_org(principal.org, pod_id)
    pods.pod_start(principal=principal, deployment=deployment)
    return pod_out(request, selectors.pod_get_for_org(principal.org, pod_id))


@router.delete(
    "/pods/{pod_id}",
    response=schemas.PodOut,
    summary="Terminate a pod",
    description="Its machine and container disk go; its volume stays unless `delete_volume=true` (409 when another "
    "pod still uses it; nothing is changed then). Asking again answers the same.",
)
@answers(409)
def pods_terminate(request: HttpRequest, pod_id: str, delete_volume: bool = False) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.pod_get_for_org(principal.org, pod_id)
    pods.pod_terminate(principal=principal, deployment=deployment, delete_volume=delete_volume)
    return pod_out(request, selectors.pod_get_for_org(principal.org, pod_id))
