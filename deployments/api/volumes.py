"""REST endpoints of storage volumes (reference/003): /api/v1/volumes."""

from __future__ import annotations

from django.db.models import Sum
from django.http import HttpRequest
from ninja import Router, Status

from accounts.auth import api_principal
from accounts.roles import CAN_READ
from billing.models import UsageMeter
from deployments import schemas, selectors, volumes
from deployments.models import Volume
from gpucloud.core.errors import answers
from gpucloud.core.money import MICROS_PER_USD

router = Router(tags=["volumes"])


def _volume_out(volume: Volume) -> dict[str, object]:
    billed = UsageMeter.objects.filter(meter_key__startswith=f"{volume.pk}:").aggregate(total=Sum("billed_micros"))
    return {
        "id": volume.pk,
        "name": volume.name,
        "size_gb": volume.size_gb,
        "target_size_gb": volume.target_size_gb,
        "region": volume.region_id,
        "status": volume.status,
        "status_reason": volume.status_reason or None,
        "hourly_price_usd": volume.hourly_price_micros / MICROS_PER_USD,
        "total_cost_usd": (billed["total"] or 0) / MICROS_PER_USD,
        "created_at": volume.created_at,
        "ready_at": volume.ready_at,
        "deleted_at": volume.deleted_at,
    }


@router.get("/volumes", response=list[schemas.VolumeOut], summary="Your storage volumes (deleted ones left out)")
def volumes_list(request: HttpRequest) -> list[dict[str, object]]:
    principal = api_principal(request)
    principal.require(CAN_READ, "listing volumes")
    return [_volume_out(v) for v in selectors.volumes_of(principal.org)]


@router.post(
    "/volumes",
    response={201: schemas.VolumeOut},
    summary="Create a storage volume",
    description="Made by the provider after the answer (status creating, then available; while the provider has "
    "no room for it, creating with `status_reason` saying so, tried again every few minutes). 402 when the balance "
    "is $0; 409 `no_capacity` when no provider keeps volumes in the region (beside the GPU type, when given).",
)
@answers(400, 402, 404, 409)
def volumes_create(request: HttpRequest, payload: schemas.VolumeCreateIn) -> Status[dict[str, object]]:
    volume = volumes.volume_create(
        principal=api_principal(request), name=payload.name, size_gb=payload.size_gb, region=payload.region,
        gpu_type=payload.gpu_type,
    )  # fmt: skip
    return Status(201, _volume_out(volume))


@router.get("/volumes/{volume_id}", response=schemas.VolumeOut, summary="One volume (a deleted one too)")
def volumes_get(request: HttpRequest, volume_id: str) -> dict[str, object]:
    principal = api_principal(request)
    principal.require(CAN_READ, "reading volumes")
    return _volume_out(selectors.volume_get_for_org(principal.org, volume_id))


@router.patch(
    "/volumes/{volume_id}",
    response=schemas.VolumeOut,
    summary="Grow a volume",
    description="Volumes only grow (400 for a size not above the current one). 409 unless it is available. "
    "It bills at the new size from when the provider has grown it.",
)
@answers(400, 409)
def volumes_grow(request: HttpRequest, volume_id: str, payload: schemas.VolumeGrowIn) -> dict[str, object]:
    principal = api_principal(request)
    volume = selectors.volume_get_for_org(principal.org, volume_id)
    return _volume_out(volumes.volume_grow(principal=principal, volume=volume, size_gb=payload.size_gb))


@router.delete(
    "/volumes/{volume_id}",
    response=schemas.VolumeOut,
    summary="Delete a volume and its data",
    description="Status deleting, then deleted once the provider confirms (billing stops then). Asking again "
    "answers the same. 409 while it grows, or while a pod that is not terminated uses it.",
)
@answers(409)
def volumes_delete(request: HttpRequest, volume_id: str) -> dict[str, object]:
    principal = api_principal(request)
    volume = selectors.volume_get_for_org(principal.org, volume_id)
    return _volume_out(volumes.volume_delete(principal=principal, volume=volume))
