"""Lambda's launch limit: about one launch request per 12 s per account (its description: "one request per
12 seconds, or five requests per minute"). Every process launching for a provider takes the provider's
launch slot in the shared cache first (cache.add with the interval as its TTL: only one taker per
interval); one that comes too soon gets a retryable error saying when the next slot opens, and Lambda
never sees the request it would have refused."""

from __future__ import annotations

import math
import time

from django.core.cache import cache

from fleet.providers.base import ProviderError


def launch_slot_take(provider: str, interval_seconds: float) -> None:
    """Take the provider's launch slot, or raise ProviderError(retry_after=seconds until it is free)."""
    if interval_seconds <= 0:
        return
    key = f"lambda-launch-slot:{provider}"
    for _ in range(2):  # the slot may expire between the add and the get: then take it again
        now = time.time()
        if cache.add(key, now, timeout=math.ceil(interval_seconds)):
            return
        taken_at = cache.get(key)
        if taken_at is not None:
            left = max(float(taken_at) + interval_seconds - now, 0.1)
            raise ProviderError(
                f"Lambda allows one launch per {interval_seconds:g} s; the next one in {left:.1f} s.",
                retry_after=left,
            )
    raise ProviderError("Lambda's launch slot is contended; trying again shortly.", retry_after=1.0)
