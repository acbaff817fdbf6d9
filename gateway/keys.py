"""API key resolution for the gateway, cached so the hot path skips the database (a signed-in
session's caller: gateway/sessions.py).

A revoked or regenerated key stops working within KEY_CACHE_SECONDS (the documented bound), and
a scoped key's grants are read with it: a grant or its revocation takes effect within the same bound."""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import sync_to_async

from accounts.auth import principal_from_api_key
from accounts.grants import invocable_deployments
from accounts.roles import CAN_INVOKE, role_at_least
from gateway.ttl_cache import TtlCache
from gpucloud.core.errors import ApiError

KEY_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Caller:
    org_id: str
    key_id: str | None  # None: a signed-in browser session (gateway/sessions.py), acting with its role
    # Scoped keys (deployment keys, scoped account keys): the only deployments they may call and
    # list (accounts/grants.py). None: the whole org.
    allowed: frozenset[str] | None = None
    can_invoke: bool = True  # account keys of viewers read, they do not invoke


_cache: TtlCache[str, Caller | ApiError] = TtlCache(KEY_CACHE_SECONDS)


def _lookup(token: str) -> Caller | ApiError:

    try:
        principal = principal_from_api_key(token)
    except ApiError as exc:  # cached too: a flood of bad keys does not reach the database
        return exc
    assert principal.api_key is not None
    return Caller(
        org_id=principal.org.pk,
        key_id=principal.api_key.pk,
        allowed=invocable_deployments(principal.api_key),
        can_invoke=principal.via_deployment_key or role_at_least(principal.role, CAN_INVOKE),
    )


async def caller_for(token: str) -> Caller:
    """The caller behind a bearer token, or the ApiError (401) explaining why not."""
    result = await _cache.get(token, lambda: sync_to_async(_lookup)(token))
    if isinstance(result, ApiError):
        raise result
    return result


def cache_clear() -> None:
    _cache.clear()
