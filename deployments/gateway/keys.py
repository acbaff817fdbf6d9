"""API key resolution for the gateway, cached so the hot path skips the database.

A revoked or regenerated key stops working within KEY_CACHE_SECONDS (the documented bound)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from gpucloud.errors import ApiError

KEY_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Caller:
    org_id: str
    key_id: str
    deployment_id: str | None  # set for deployment keys: the only deployment they may call


_cache: dict[str, tuple[float, Caller | ApiError]] = {}


def _lookup(token: str) -> Caller:
    from accounts.auth import principal_from_api_key

    principal = principal_from_api_key(token)
    assert principal.api_key is not None
    return Caller(org_id=principal.org.pk, key_id=principal.api_key.pk, deployment_id=principal.api_key.deployment_id)


async def caller_for(token: str) -> Caller:
    """The caller behind a bearer token, or the ApiError (401) explaining why not."""
    now = time.monotonic()
    cached = _cache.get(token)
    if cached is None or cached[0] < now:
        try:
            result: Caller | ApiError = await sync_to_async(_lookup)(token)
        except ApiError as exc:
            result = exc
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[token] = (now + KEY_CACHE_SECONDS, result)
        cached = _cache[token]
    if isinstance(cached[1], ApiError):
        raise cached[1]
    return cached[1]


def cache_clear() -> None:
    _cache.clear()
