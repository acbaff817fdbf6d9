"""Stored offers and their sync (DESIGN §5): what each provider can launch, kept in the catalog's
offer table (catalog.models.Offer) so that no request asks a driver.

What is stored: one row per provider x GPU type x GPU count x region x tier x spot, with our price,
the provider's cost, how many can be launched and when the provider last listed it (`seen_at`).

When it is refreshed (`offers_refresh`, through fleet.tasks.offers_refresh_task):
- by beat, every enabled provider every GPUCLOUD_OFFERS_REFRESH_SECONDS, or less often for a provider
  whose config sets `offers_refresh_seconds` (a cloud's API limits: its 429s also hold every call of
  that provider back, fleet/providers/cloud/api.py);
- at once for one provider after a launch there was refused for capacity (its availability was stale);
- for one provider after each launch and each confirmed termination there, because a launch takes
  capacity and an end gives it back: for the local and Kubernetes providers, whose capacity is this
  platform's own, nothing else changes their availability, and it must be true before the next deploy;
- for every enabled provider when the catalog is loaded (`manage.py load_catalog`) and when the embedded
  server starts, so a fresh platform shows its offers at once;
- for one provider when the operator tests its connection (`offers_test`: the admin's action,
  `manage.py provider_set --test`).

A refresh replaces the provider's rows with what its driver lists (upserted with seen_at=now, rows it no
longer lists deleted). A provider error changes nothing: its rows stay, and once not seen for
GPUCLOUD_OFFER_MAX_AGE_SECONDS readers ignore them (catalog.selectors.offers_live) and a refresh deletes
them. A disabled provider has no offers. A deleted row's id and terms are kept a day
(catalog.models.WithdrawnOffer), so a client renting an offer it listed before it vanished falls over to
a like one (deployments/rent.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from catalog.models import WITHDRAWN_KEEP_SECONDS, Offer, OfferTier, Provider, WithdrawnOffer
from fleet import drivers
from fleet.providers import base
from fleet.providers.base import ProviderError
from gpucloud.core.jobs import enqueue

logger = logging.getLogger(__name__)

REFRESH_TASK = "fleet.tasks.offers_refresh_task"
TERMS = ("provider", "gpu_type", "gpu_count", "region", "tier", "spot")
FIGURES = ("price_per_hour_micros", "cost_per_hour_micros", "available", "seen_at")


def offers_refresh(provider: Provider) -> int | None:
    """Ask the provider's driver for its offers and make its rows exactly those; returns how many
    are stored, or None when the driver failed (its rows are left to age out)."""
    if not provider.enabled:
        return _drop(provider)
    try:
        listed = drivers.driver_of(provider).offers()
    except ProviderError as exc:
        logger.warning("Offers of %s not refreshed: %s", provider.slug, exc.message)
        _expired_delete()
        return None
    return _store(provider, listed)


@dataclass(frozen=True)
class OffersTest:
    """What the operator's connection test found: the offers the driver listed and how many of them
    were stored, or the provider's error (its message: never a credential)."""

    listed: list[base.Offer] = field(default_factory=list)
    stored: int = 0
    error: str | None = None


def offers_test(provider: Provider) -> OffersTest:
    """Ask the provider's driver for its offers now and store them, as a refresh does (a disabled
    provider is asked too, and its rows dropped); a provider error changes nothing and is told."""
    try:
        listed = drivers.driver_of(provider).offers()
    except ProviderError as exc:
        return OffersTest(error=exc.message)
    return OffersTest(listed=listed, stored=_store(provider, listed) if provider.enabled else _drop(provider))


def _store(provider: Provider, listed: list[base.Offer]) -> int:
    """Make the provider's rows exactly `listed`; how many are stored."""
    with transaction.atomic():
        # One refresh of a provider at a time (beat and a launch's may meet), each stamped after the
        # previous one: a slower refresh can never delete the rows a later one wrote.
        Provider.objects.select_for_update().filter(pk=provider.pk).first()
        now = timezone.now()
        rows = _rows(provider, listed, now)
        Offer.objects.bulk_create(rows, update_conflicts=True, unique_fields=TERMS, update_fields=FIGURES)
        _withdraw(Offer.objects.filter(provider=provider, seen_at__lt=now))  # no longer listed
        _expired_delete()
    return len(rows)


def offers_refresh_all() -> dict[str, int | None]:
    """Refresh every provider that is due (disabled ones lose their rows); what each stored, None for a
    failure. A provider whose config sets `offers_refresh_seconds` (a cloud with a tight rate limit) is
    asked no more often than that: until then its stored rows stand (and count as its answer)."""
    now = timezone.now()
    stored: dict[str, int | None] = {}
    for provider in Provider.objects.all():
        rows = Offer.objects.filter(provider=provider)
        interval = _refresh_interval(provider)
        last = rows.aggregate(last=Max("seen_at"))["last"] if interval else None
        if interval and last is not None and last > now - timedelta(seconds=interval):
            stored[provider.slug] = rows.count()
        else:
            stored[provider.slug] = offers_refresh(provider)
    return stored


def _refresh_interval(provider: Provider) -> float | None:
    value = provider.config.get("offers_refresh_seconds")
    if not provider.enabled or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):  # a typo in the config must not stop the refresh of every provider
        logger.warning("Provider %s: offers_refresh_seconds %r is not a number; ignored.", provider.slug, value)
        return None


def offers_refresh_soon(provider_slug: str) -> None:
    """Refresh one provider's offers in the background, after the current transaction commits."""
    enqueue(REFRESH_TASK, provider_slug)


def driver_offer(offer: Offer) -> base.Offer:
    """A stored offer as its driver takes it to launch."""
    return base.Offer(
        provider=offer.provider_id, gpu_type=offer.gpu_type, gpu_count=offer.gpu_count, region=offer.region,
        tier=base.Tier(offer.tier), spot=offer.spot, price_per_hour_micros=offer.price_per_hour_micros,
        cost_per_hour_micros=offer.cost_per_hour_micros, available=offer.available,
    )  # fmt: skip


def _drop(provider: Provider) -> int:
    _withdraw(Offer.objects.filter(provider=provider))
    return 0


def _withdraw(offers: QuerySet[Offer]) -> None:
    """Delete these offers, keeping each one's id and terms a while (WithdrawnOffer: a rent of it
    falls over to a like offer)."""
    now = timezone.now()
    gone = [_withdrawn(o, now) for o in offers]
    WithdrawnOffer.objects.bulk_create(gone, ignore_conflicts=True)
    offers.filter(pk__in=[o.pk for o in gone]).delete()


def _rows(provider: Provider, listed: list[base.Offer], now: datetime) -> list[Offer]:
    """One row per terms; a driver listing the same terms twice gets the cheaper one stored."""
    by_terms: dict[tuple[object, ...], base.Offer] = {}
    for o in listed:
        key = (o.gpu_type, o.gpu_count, o.region, o.tier, o.spot)
        if key not in by_terms or o.price_per_hour_micros < by_terms[key].price_per_hour_micros:
            by_terms[key] = o
    return [_row(provider, o, now) for o in by_terms.values()]


def _row(provider: Provider, o: base.Offer, now: datetime) -> Offer:
    return Offer(
        provider=provider, gpu_type=o.gpu_type, gpu_count=o.gpu_count, region=o.region, tier=OfferTier(str(o.tier)),
        spot=o.spot, price_per_hour_micros=o.price_per_hour_micros, cost_per_hour_micros=o.cost_per_hour_micros,
        available=max(0, o.available), seen_at=now,
    )  # fmt: skip


def _withdrawn(o: Offer, at: datetime) -> WithdrawnOffer:
    return WithdrawnOffer(
        id=o.pk, provider_slug=o.provider_id, gpu_type=o.gpu_type, gpu_count=o.gpu_count, region=o.region,
        tier=o.tier, spot=o.spot, price_per_hour_micros=o.price_per_hour_micros, withdrawn_at=at,
    )  # fmt: skip


def _expired_delete() -> None:
    now = timezone.now()
    _withdraw(Offer.objects.filter(seen_at__lt=now - timedelta(seconds=settings.GPUCLOUD_OFFER_MAX_AGE_SECONDS)))
    WithdrawnOffer.objects.filter(withdrawn_at__lt=now - timedelta(seconds=WITHDRAWN_KEEP_SECONDS)).delete()
