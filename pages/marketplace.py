"""The Marketplace page (issue 18): the live offers, with the filters and sorts of GET /api/v1/offers,
the table swapped in place by HTMX as the filters change; each row rents its offer as a pod (the pod
form, prefilled with the offer's terms) or as a model deployment (a small form right in the row).
Thin: parse the query, read deployments.marketplace, call deployments.rent, render."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import principal_from_session
from accounts.roles import CAN_WRITE, role_at_least
from catalog.models import CatalogModel, GpuType, OfferTier, Region
from deployments import marketplace as market
from deployments import rent
from deployments.marketplace import MarketOffer, OfferFilters
from gpucloud.core.errors import ApiError, InvalidRequest
from gpucloud.core.money import MICROS_PER_USD
from pages.form_urls import get_goes_to

PAGE_ROWS = 200  # the API's page size at most: more than any listing holds today
FILTERS = ("gpu_type", "gpu_count", "min_vram_gb", "region", "cloud_type", "spot", "max_price_per_hour_usd", "sort")


@dataclass(frozen=True)
class Row:
    market: MarketOffer
    offer_id: str
    pod_url: str  # the pod form, prefilled with the offer's terms and its id
    models: list[CatalogModel] = field(default_factory=list)  # the catalog models that fit its GPU

    @property
    def price_per_day_micros(self) -> int:
        return self.market.offer.price_per_hour_micros * 24


@login_required
@require_GET
def marketplace(request: HttpRequest) -> HttpResponse:
    """The offers; with HX-Request only the table (the filters' form swaps it in place)."""
    asked = {name: request.GET.get(name, "").strip()[:40] for name in FILTERS}
    error, rows = "", []
    try:
        offers = market.offers_market(_filters(asked), sort=market.sort_checked(asked["sort"] or "price"))
        rows = _rows(offers[:PAGE_ROWS])
    except ApiError as exc:  # a filter from an old link or typed into the address: said, nothing listed
        error = exc.message
    context = {
        "rows": rows, "asked": asked, "error": error, "gpu_types": GpuType.objects.filter(gpu_count__lte=1),
        "regions": Region.objects.all(), "tiers": OfferTier.choices, "gpu_counts": market.GPU_COUNTS,
        "sorts": market.SORTS, "show_providers": settings.GPUCLOUD_MARKETPLACE_SHOW_PROVIDERS,
        "can_write": role_at_least(principal_from_session(request).role, CAN_WRITE),
        "query": urlencode({k: v for k, v in asked.items() if v}),
    }  # fmt: skip
    template = "marketplace/marketplace.html#offers" if request.htmx else "marketplace/marketplace.html"  # type: ignore[attr-defined]
    return render(request, template, context)


@get_goes_to("marketplace")
@login_required
@require_POST
def marketplace_rent_model(request: HttpRequest) -> HttpResponse:
    """Rent an offer as a model deployment (one replica) at the offer's price or its fallover's."""
    principal = principal_from_session(request)
    back = f"{reverse('marketplace')}?{request.POST.get('query', '')}"
    try:
        requested = rent.rent_offer_get(request.POST.get("offer", ""))
        rental = rent.offer_rent_model(
            principal=principal, requested=requested, model_id=request.POST.get("model_id", ""),
            name=request.POST.get("name", "").strip()[:100], ceiling_micros=requested.price_per_hour_micros,
        )  # fmt: skip
    except ApiError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, rented_message(rental))
    return redirect("deployment_detail", deployment_id=rental.deployment.pk)


def rented_message(rental: rent.Rental) -> str:
    """What the owner is told after a rent: which offer it runs on and at what price, and a fallover."""
    price = rental.offer.price_per_hour_micros / MICROS_PER_USD
    where = (
        f"on {rent.offer_public_id(rental.offer)} at ${price:.2f}/h ({'spot' if rental.offer.spot else 'on-demand'})"
    )
    if rental.offer.pk == rental.requested.pk:
        return f"Renting {rental.deployment.name} {where}."
    skipped = "; ".join(f"{s.offer_id}: {s.reason}" for s in rental.tried)
    return (
        f"Renting {rental.deployment.name} {where}, in place of {rent.offer_public_id(rental.requested)} ({skipped})."
    )


def _filters(asked: dict[str, str]) -> OfferFilters:
    """The API's filters, from the page's query (an empty field: no filter)."""
    return OfferFilters(
        gpu_type=asked["gpu_type"] or None, gpu_count=_number(asked["gpu_count"], "gpu_count"),
        min_vram_gb=_number(asked["min_vram_gb"], "min_vram_gb"), region=asked["region"] or None,
        cloud_type=asked["cloud_type"] or None, spot={"true": True, "false": False}.get(asked["spot"]),
        max_price_micros=_price(asked["max_price_per_hour_usd"]),
    )  # fmt: skip


def _number(text: str, name: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise InvalidRequest(f"{name.replace('_', ' ')} must be a whole number, e.g. 1.", param=name)
    return int(text)


def _price(text: str) -> int | None:
    try:
        usd = float(text.lstrip("$")) if text else None
    except ValueError:
        raise InvalidRequest("Max price must be dollars per hour, e.g. 2.50.", param="max_price") from None
    return None if usd is None or usd <= 0 else round(usd * MICROS_PER_USD)


def _rows(offers: list[MarketOffer]) -> list[Row]:
    """Each offer with its Rent links: the pod form's query, and the models that fit a catalog GPU."""
    deployable = {g.slug: g.vram_gb for g in GpuType.objects.all()}
    models = list(CatalogModel.objects.order_by("name"))
    return [
        Row(m, rent.offer_public_id(m.offer), _pod_url(m),
            [c for c in models if m.offer.gpu_type in deployable and c.min_vram_gb <= deployable[m.offer.gpu_type]])
        for m in offers
    ]  # fmt: skip


def _pod_url(row: MarketOffer) -> str:
    offer = row.offer
    terms = {"offer": rent.offer_public_id(offer), "gpu_type": row.gpu.slug, "gpu_count": offer.gpu_count,
             "region": offer.region, "cloud_type": offer.tier}  # fmt: skip
    return f"{reverse('pod_new')}?{urlencode(terms | ({'spot': 'on'} if offer.spot else {}))}"
