"""Renting a marketplace offer in one call (issue 18, reference/001): POST /api/v1/offers/{id}/rent.

A rent is a pod (`pod_create`) or a model deployment (`deployment_create`) made on one offer: its GPU
type and count, region, tier and spot-ness are the workload's terms, and its provider is pinned
(Deployment.provider: the fleet launches there and nowhere else, now and at every relaunch). It is
billed like any pod or deployment, from the same balance, at the offer's price.

The ceiling is the most per hour the caller accepts: the body's `max_price_per_hour_usd`, else the
asked offer's own price, so a fallover never costs more than what was chosen. A spot pod keeps it as
its own ceiling (PodSettings.max_price_micros).

Fallover. The asked offer is skipped when it is gone (still stored but no longer live: not listed
lately, or its provider disabled), over the ceiling, out of capacity (available 0) or its driver
refuses the pod (its image or ports: the checks a pod create makes before any launch). Then the offers
that *match* it are tried in the marketplace's price order (cheapest, then most available): the same
GPU type and count, the same spot-ness, the same tier (cloud type), any provider, any region, live,
with capacity and priced at or under the ceiling. The first that takes it is used; the answer names it
and every offer skipped with why. None left: 409 `no_capacity` naming them; nothing is written.

Ids are `off_<pk>`. A refresh (fleet/offers.py) updates a still-listed offer's row in place (its id
stays) and deletes the rows its provider no longer lists, keeping their ids and terms a day
(catalog.models.WithdrawnOffer): renting one of those is renting a gone offer, which falls over. An id
that never was, or was withdrawn over a day ago, answers 404 ("gone; list offers again").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from django.utils import timezone

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from catalog.gpu_units import base_slug
from catalog.models import WITHDRAWN_KEEP_SECONDS, CatalogModel, GpuType, Offer, WithdrawnOffer
from catalog.selectors import offers_live
from deployments.models import Deployment
from deployments.pod_settings import PodSettings, pod_settings_check
from deployments.pods import pod_create, pod_offer_refusal, pod_rentable_check
from deployments.services import NoCapacity, deployment_create
from gpucloud.core.errors import InvalidRequest, NotFound
from gpucloud.core.money import MICROS_PER_USD, usd_display

_OFFER_ID = re.compile(r"^off_([1-9][0-9]{0,17})$")


@dataclass(frozen=True)
class Skipped:
    offer_id: str
    reason: str


@dataclass(frozen=True)
class Rental:
    deployment: Deployment
    offer: Offer  # the one it runs on
    requested: Offer
    ceiling_micros: int
    tried: list[Skipped]  # skipped before `offer`, in the order tried


def offer_public_id(offer: Offer) -> str:
    return f"off_{offer.pk}"


def rent_offer_get(offer_id: str) -> Offer:
    """The stored offer `off_<pk>` names, live or not, or the terms of a withdrawn one (an unsaved
    Offer, which is never launched: it is not live, so a rent falls over); 404 otherwise."""
    found = _OFFER_ID.match(offer_id)
    pk = int(found.group(1)) if found else None
    offer = Offer.objects.select_related("provider").filter(pk=pk).first() if pk else None
    if offer is None and pk is not None:
        kept_since = timezone.now() - timedelta(seconds=WITHDRAWN_KEEP_SECONDS)
        withdrawn = WithdrawnOffer.objects.filter(pk=pk, withdrawn_at__gte=kept_since).first()
        offer = withdrawn.as_offer() if withdrawn else None
    if offer is None:
        raise NotFound(f"No offer {offer_id[:40]!r}: it is gone or never was; list offers again (GET /api/v1/offers).")
    return offer


def rent_ceiling(requested: Offer, max_price_per_hour_usd: float | None) -> int:
    """The ceiling in micro-USD per hour: the caller's, else the asked offer's own price."""
    if max_price_per_hour_usd is None:
        return requested.price_per_hour_micros
    if max_price_per_hour_usd <= 0:
        raise InvalidRequest("max_price_per_hour_usd must be more than 0.", param="max_price_per_hour_usd")
    return min(round(max_price_per_hour_usd * MICROS_PER_USD), 2**63 - 1)


def pod_terms(offer: Offer, ceiling_micros: int) -> dict[str, Any]:
    """The PodSettings fields an offer decides (a spot pod keeps the ceiling as its own)."""
    return {
        "gpu_type": base_slug(offer.gpu_type, offer.gpu_count), "gpu_count": offer.gpu_count,
        "region": offer.region, "cloud_type": offer.tier, "spot": offer.spot,
        "max_price_micros": ceiling_micros if offer.spot else None,
    }  # fmt: skip


def offer_rent_pod(*, principal: Principal, requested: Offer, asked: PodSettings, ceiling_micros: int) -> Rental:
    """A pod of `asked` (its terms replaced by each offer's) on the offer or its fallover."""
    principal.require(CAN_WRITE, "renting offers")
    asked = replace(asked, **pod_terms(requested, ceiling_micros))
    pod_settings_check(asked)  # a body no offer could take is a 400, before any offer is tried
    pod_rentable_check(asked)

    def launch(offer: Offer) -> Deployment:
        return pod_create(principal=principal, asked=replace(asked, **pod_terms(offer, ceiling_micros)), offer=offer)

    def refusal(offer: Offer) -> str | None:
        refused = pod_offer_refusal(offer, asked)
        return refused[0] if refused else None

    return _rent(requested, ceiling_micros, launch, refusal)


def offer_rent_model(
    *, principal: Principal, requested: Offer, model_id: str, name: str, ceiling_micros: int
) -> Rental:
    """A deployment of catalog model `model_id` (one replica) on the offer or its fallover."""
    principal.require(CAN_WRITE, "renting offers")
    if not CatalogModel.objects.filter(slug=model_id).exists():
        raise NotFound(f"No model {model_id!r} in the catalog; see GET /api/v1/models.", param="model.model_id")
    if not GpuType.objects.filter(slug=requested.gpu_type).exists():  # every match has the same GPU type
        raise InvalidRequest(
            f"Models deploy on the catalog's GPU types (GET /api/v1/gpu-types); {requested.gpu_type!r} is not one. "
            "Rent this offer as a pod instead.",
            param="model",
        )

    def launch(offer: Offer) -> Deployment:
        return deployment_create(
            principal=principal, name=name, model_id=model_id, gpu_type=offer.gpu_type, region=offer.region,
            spot=offer.spot, cloud_type=offer.tier, offer=offer,
        )  # fmt: skip

    return _rent(requested, ceiling_micros, launch, lambda offer: None)


def _rent(
    requested: Offer, ceiling: int, launch: Callable[[Offer], Deployment], refusal: Callable[[Offer], str | None]
) -> Rental:
    live = list(
        offers_live().filter(
            gpu_type=requested.gpu_type, gpu_count=requested.gpu_count, spot=requested.spot, tier=requested.tier
        )
    )
    candidates = [requested, *(o for o in live if o.pk != requested.pk)]
    live_ids = {o.pk for o in live}
    tried: list[Skipped] = []
    for offer in candidates:
        reason = _skip_reason(offer, offer.pk in live_ids, ceiling) or refusal(offer)
        if reason is None:
            try:
                return Rental(launch(offer), offer, requested, ceiling, tried)
            except NoCapacity as exc:  # written nothing: its transaction rolled back
                reason = exc.message
        tried.append(Skipped(offer_public_id(offer), reason))
    raise NoCapacity(_none_left(requested, ceiling, tried))


def _skip_reason(offer: Offer, live: bool, ceiling: int) -> str | None:
    if not live:
        return "gone: its provider no longer lists it"
    if offer.price_per_hour_micros > ceiling:
        return f"{usd_display(offer.price_per_hour_micros)}/h is over the ceiling of {usd_display(ceiling)}/h"
    if offer.available <= 0:
        return "out of capacity"
    return None


def _none_left(requested: Offer, ceiling: int, tried: list[Skipped]) -> str:
    kind = "spot" if requested.spot else "on-demand"
    what = f"{requested.gpu_count}x {base_slug(requested.gpu_type, requested.gpu_count)} {kind} {requested.tier}"
    reasons = "; ".join(f"{s.offer_id}: {s.reason}" for s in tried)
    return (
        f"No offer like {offer_public_id(requested)} ({what}, any provider or region) at "
        f"{usd_display(ceiling)}/h or less can take it now; nothing was created. Tried: {reasons}."
    )
