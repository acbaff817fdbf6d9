"""API key resolution for the gateway, cached so the hot path skips the database (a signed-in
session's caller: gateway/sessions.py).

A scoped key's grants and an account key's role are read with it. A revoked or regenerated key, a
changed grant, or its creator's removal or new role is announced when it commits
(gpucloud/core/access_changes.py) and drops the cached entry in every gateway process within a
second (gateway/access_listener.py); KEY_CACHE_SECONDS is the bound only while Redis is unreachable."""

from __future__ import annotations

from dataclasses import dataclass

from asgiref.sync import sync_to_async

from accounts.auth import principal_from_api_key
from accounts.grants import invocable_deployments
from accounts.roles import CAN_INVOKE, role_at_least
from gateway.access_listener import ensure_listening
from gateway.ttl_cache import TtlCache
from gpucloud.core import access_changes
from gpucloud.core.access_changes import AccessChange
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
    user_id: int | None = None  # whose role it acts with: the key's creator, or the signed-in user

    def stale_after(self, change: AccessChange) -> bool:
        return change.concerns(key_id=self.key_id, user_id=self.user_id, org_id=self.org_id)


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
        user_id=principal.user.pk if principal.user else None,
    )


async def caller_for(token: str) -> Caller:
    """The caller behind a bearer token, or the ApiError (401) explaining why not."""
    ensure_listening()
    result = await _cache.get(token, lambda: sync_to_async(_lookup)(token))
    if isinstance(result, ApiError):
        raise result
    return result


def _forget(change: AccessChange) -> None:
    # A refusal is cached too (a wrong or revoked key): only forgetting everything drops those.
    _cache.forget_where(lambda cached: change.everything or (isinstance(cached, Caller) and cached.stale_after(change)))


access_changes.listen(_forget)


def cache_clear() -> None:
    _cache.clear()
