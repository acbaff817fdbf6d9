"""REST endpoints of the GPU marketplace (issue 18, reference/001): GET /api/v1/offers and
POST /api/v1/offers/{id}/rent."""

from __future__ import annotations

from typing import Annotated

from django.conf import settings
from django.http import HttpRequest
from ninja import Router, Status
from pydantic import Field

from accounts.auth import api_principal
from accounts.roles import CAN_READ, CAN_WRITE
from catalog.models import OfferTier
from deployments import marketplace, rent, schemas, selectors
from deployments.api.deployments import deployment_out
from deployments.api.pods import pod_out
from deployments.marketplace import MarketOffer, OfferFilters
from deployments.models import DeploymentKind
from deployments.pod_templates import pod_settings_of
from gpucloud.core.errors import InvalidRequest, answers
from gpucloud.core.money import MICROS_PER_USD

router = Router(tags=["marketplace"])
PAGE_MAX = 200

OFFERS_DESCRIPTION = """The stored offers of every enabled provider (refreshed by the fleet, never \
asked of a provider here), the same for every organization. Offers of a GPU the catalog does not know \
are left out.

Filters, each optional: `gpu_type` (a catalog slug from GET /gpu-types, 404 for none; `h100` matches \
offers of any number of H100s, `mi300x_8` only those of 8), `gpu_count` (1, 2, 4 or 8; 400 for another \
number, 422 for no number), `min_vram_gb` (total across the offer's GPUs, 0 or more; 422 otherwise), \
`region` (a slug from GET /regions, 404 for none), `cloud_type` (`secure` or `community`, 400 otherwise), \
`spot` (`true`: interruptible offers only, `false`: on-demand only; left out: both), \
`max_price_per_hour_usd` (above 0, 422 otherwise).

`sort`: `price` (default: cheapest first, then most available), `reliability` (highest \
`launch_success_rate` first, offers with none observed last, then cheapest) or `availability` (most \
available first, then cheapest); 400 otherwise. Paged by `limit` (1 to 200, default 50) and `offset` \
(0 or more), 422 outside those; `total` counts every offer matching the filters.

`reliability` is observed over the last 30 days on the provider's instances of that GPU: \
`launch_success_rate` = launched / (launched + failed before launch), null when none was tried; \
`launches_30d`; `preemptions_30d` (spot machines the provider took back). `provider` is the \
provider's slug when the operator shows providers (GPUCLOUD_MARKETPLACE_SHOW_PROVIDERS), else null. \
Every error names the parameter at fault (`error.param`)."""


def _offer_out(row: MarketOffer) -> dict[str, object]:
    offer, reliability = row.offer, row.reliability
    return {
        "id": f"off_{offer.pk}",
        "gpu_type": row.gpu.slug,
        "gpu_count": offer.gpu_count,
        "vram_gb": row.vram_gb,
        "region": offer.region,
        "cloud_type": offer.tier,
        "spot": offer.spot,
        "price_per_hour_usd": offer.price_per_hour_micros / MICROS_PER_USD,
        "price_per_day_usd": offer.price_per_hour_micros * 24 / MICROS_PER_USD,
        "available": offer.available,
        "reliability": {
            "launch_success_rate": reliability.launch_success_rate,
            "launches_30d": reliability.launches,
            "preemptions_30d": reliability.preemptions,
        },
        "last_seen_at": offer.seen_at,
        "provider": offer.provider_id if settings.GPUCLOUD_MARKETPLACE_SHOW_PROVIDERS else None,
    }


def _micros(usd: float | None) -> int | None:
    """A price ceiling in micro-USD; one past any column's range asks for no ceiling at all."""
    return None if usd is None or usd * MICROS_PER_USD >= 2**63 else round(usd * MICROS_PER_USD)


def _gpu_count_checked(gpu_count: int | None) -> int | None:
    if gpu_count is not None and gpu_count not in marketplace.GPU_COUNTS:
        raise InvalidRequest("gpu_count must be 1, 2, 4 or 8.", param="gpu_count")
    return gpu_count


def _cloud_type_checked(cloud_type: str | None) -> str | None:
    if cloud_type is not None and cloud_type not in OfferTier.values:
        raise InvalidRequest(
            f"Unknown cloud_type {cloud_type!r}; use one of {', '.join(OfferTier.values)}.", param="cloud_type"
        )
    return cloud_type


@router.get(
    "/offers", response=schemas.OfferPage, summary="The GPU marketplace: live offers", description=OFFERS_DESCRIPTION
)
@answers(400, 404)
def offers_list(
    request: HttpRequest,
    gpu_type: str | None = None,
    gpu_count: Annotated[int | None, Field(json_schema_extra={"enum": [*marketplace.GPU_COUNTS, None]})] = None,
    min_vram_gb: Annotated[int | None, Field(ge=0)] = None,
    region: str | None = None,
    cloud_type: Annotated[str | None, Field(json_schema_extra={"enum": [*OfferTier.values, None]})] = None,
    spot: bool | None = None,
    max_price_per_hour_usd: Annotated[float | None, Field(gt=0, allow_inf_nan=False)] = None,
    sort: Annotated[str, Field(json_schema_extra={"enum": list(marketplace.SORTS)})] = "price",
    limit: Annotated[int, Field(ge=1, le=PAGE_MAX)] = 50,
    offset: Annotated[int, Field(ge=0)] = 0,
) -> dict[str, object]:
    api_principal(request).require(CAN_READ, "listing offers")
    filters = OfferFilters(
        gpu_type=gpu_type, min_vram_gb=min_vram_gb, region=region,
        cloud_type=_cloud_type_checked(cloud_type), spot=spot, gpu_count=_gpu_count_checked(gpu_count),
        max_price_micros=_micros(max_price_per_hour_usd),
    )  # fmt: skip
    rows = marketplace.offers_market(filters, sort=marketplace.sort_checked(sort))
    page = rows[offset : offset + limit]
    return {"data": [_offer_out(r) for r in page], "total": len(rows), "limit": limit, "offset": offset,
            "has_more": offset + len(page) < len(rows)}  # fmt: skip


RENT_DESCRIPTION = """Rent the offer in one call, as a pod (`pod`: POST /pods's body without where it runs) or \
a model deployment of one replica (`model`: `model_id` and an optional `name`); exactly one of them (400 \
otherwise). It is a pod or deployment like any other: its first minute is held from your balance (402 when \
the credit is short, as a create answers), it launches after the answer on the offer's provider only, and it \
bills at `price_per_hour_usd` from then. The answer echoes `billing` (`spot` or `on_demand`, as the offer \
is) and the ceiling `max_price_per_hour_usd` (the body's, else the offer's own price).

Fallover: when the offer is gone (not listed lately, or no longer listed at all: its id still rents for \
a day after its provider stopped listing it), over the ceiling, out of capacity (`available` 0), or \
its provider cannot run the pod (its image or ports), the next *matching* offer is used: the same GPU type and \
count, spot-ness and cloud type, any provider and any region, with capacity, at or under the ceiling, \
cheapest first (then most available). `offer_id` is the one used, `requested_offer_id` the one asked, and \
`tried` each offer skipped with why. None left: 409 `no_capacity` naming them, and nothing is created or \
charged.

404 for an id that is not `off_<number>`, that never existed, or whose offer its provider stopped listing \
over a day ago (list offers again), and for an unknown model or template. \
400 for settings a pod cannot have (with the field in `error.param`), a model on an offer whose GPU type the \
catalog does not deploy models on, or a model too big for the GPU. 422 for a ceiling not above 0 or a body \
its schema refuses."""


@router.post(
    "/offers/{offer_id}/rent",
    response={201: schemas.OfferRentOut},
    summary="Rent an offer: a pod or a model deployment on it, in one call",
    description=RENT_DESCRIPTION,
)
@answers(400, 402, 404, 409)
def offers_rent(request: HttpRequest, offer_id: str, payload: schemas.OfferRentIn) -> Status[dict[str, object]]:
    principal = api_principal(request)
    principal.require(CAN_WRITE, "renting offers")  # before the body: a viewer is told what it may not do
    if (payload.pod is None) == (payload.model is None):
        raise InvalidRequest("Say what to rent it as: exactly one of pod and model.", param="pod")
    requested = rent.rent_offer_get(offer_id)
    ceiling = rent.rent_ceiling(requested, payload.max_price_per_hour_usd)
    if payload.pod is not None:
        pod = payload.pod
        template = (
            selectors.template_get_for_org(principal.org, pod.template, param="pod.template") if pod.template else None
        )
        given = {name: getattr(pod, name) for name in pod.model_fields_set - {"template"}}
        # A rented pod has no volume (deployments/rent.py): a template's suggested one is left out.
        asked = pod_settings_of(template, given | rent.pod_terms(requested, ceiling) | {"new_volume": None})
        rental = rent.offer_rent_pod(principal=principal, requested=requested, asked=asked, ceiling_micros=ceiling)
    else:
        assert payload.model is not None
        rental = rent.offer_rent_model(
            principal=principal, requested=requested, model_id=payload.model.model_id, name=payload.model.name,
            ceiling_micros=ceiling,
        )  # fmt: skip
    return Status(201, _rental_out(request, rental))


def _rental_out(request: HttpRequest, rental: rent.Rental) -> dict[str, object]:
    deployment, is_pod = rental.deployment, rental.deployment.kind == DeploymentKind.POD
    path = f"/api/v1/{'pods' if is_pod else 'deployments'}/{deployment.pk}"
    return {
        "kind": "pod" if is_pod else "model",
        "id": deployment.pk,
        "url": request.build_absolute_uri(path),
        "offer_id": rent.offer_public_id(rental.offer),
        "requested_offer_id": rent.offer_public_id(rental.requested),
        "tried": [{"offer_id": s.offer_id, "reason": s.reason} for s in rental.tried],
        "billing": "spot" if rental.offer.spot else "on_demand",
        "price_per_hour_usd": rental.offer.price_per_hour_micros / MICROS_PER_USD,
        "max_price_per_hour_usd": rental.ceiling_micros / MICROS_PER_USD,
        "pod": pod_out(request, selectors.pod_get_for_org(deployment.org, deployment.pk)) if is_pod else None,
        "deployment": None if is_pod else deployment_out(request, deployment),
    }
