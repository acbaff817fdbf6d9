"""Stored offers of made-up providers (RunPod's driver: nothing in these tests launches on them)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from catalog.models import Offer, Provider

USD = 1_000_000


def offer(provider: str, gpu_type: str = "h100", *, price: float = 2.0, count: int = 1, region: str = "atl1",
          tier: str = "secure", spot: bool = False, available: int = 1,
          age: timedelta = timedelta()) -> Offer:  # fmt: skip
    """An offer of `provider` (made on first use, named "<slug> cloud"), last listed `age` ago."""
    owner, _ = Provider.objects.get_or_create(slug=provider, defaults={"name": f"{provider} cloud", "driver": "runpod"})
    return Offer.objects.create(
        provider=owner, gpu_type=gpu_type, gpu_count=count, region=region, tier=tier, spot=spot,
        price_per_hour_micros=round(price * USD), cost_per_hour_micros=round(price * USD * 0.8), available=available,
        seen_at=timezone.now() - age,
    )  # fmt: skip
