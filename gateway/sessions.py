"""Signed-in browser sessions on the per-deployment chat routes, so a page's chat takes the same
way as a bearer-key call (route, limit, wake, relay, counters).

A session cookie resolves to the user acting in the session's current org, as the pages decide
it (accounts.auth.principal_from_session_key), cached like keys: a member's removal or new role
is announced and shows in every gateway process within a second (as for keys, gateway/keys.py);
signing out, a changed password or a switch of org shows within SESSION_CACHE_SECONDS. A session
caller has no key and no scope: the org's deployments, as far as the member's role allows invoking.

A cookie rides along with any cross-site POST, so a session call must also pass Django's CSRF
rules, applied by Django's own CsrfViewMiddleware: an Origin (when sent) of this site or of
CSRF_TRUSTED_ORIGINS, over HTTPS without an Origin a Referer of this site, and an X-CSRFToken
header matching the csrftoken cookie. The check reads headers only: no database, no body.
"""

from __future__ import annotations

import io
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponseBase
from django.http.cookie import parse_cookie
from django.middleware.csrf import CsrfViewMiddleware

from accounts.auth import principal_from_session_key
from accounts.roles import CAN_INVOKE, role_at_least
from gateway import errors
from gateway.access_listener import ensure_listening
from gateway.keys import KEY_CACHE_SECONDS, Caller
from gateway.ttl_cache import TtlCache
from gpucloud.core import access_changes
from gpucloud.core.access_changes import AccessChange

SESSION_CACHE_SECONDS = KEY_CACHE_SECONDS
# What the CSRF check reads of a request; the body's headers are left out, so Django never
# tries to parse the (unread) body as a form.
_CSRF_HEADERS = frozenset({b"cookie", b"origin", b"referer", b"host", b"x-csrftoken", b"x-forwarded-proto",
                           b"x-forwarded-host", b"x-forwarded-port"})  # fmt: skip

_cache: TtlCache[str, Caller | None] = TtlCache(SESSION_CACHE_SECONDS)


def _lookup(session_key: str) -> Caller | None:
    principal = principal_from_session_key(session_key)
    if principal is None:  # cached too: a flood of stale cookies does not reach the database
        return None
    return Caller(
        org_id=principal.org.pk,
        key_id=None,
        can_invoke=role_at_least(principal.role, CAN_INVOKE),
        user_id=principal.user.pk if principal.user else None,
    )


class _CsrfCheck(CsrfViewMiddleware):
    """Django's CSRF middleware, answering a refusal's reason instead of rendering its failure page."""

    def _reject(self, request: HttpRequest, reason: str) -> Any:
        return reason


def _view(request: HttpRequest) -> HttpResponseBase:
    """What the check guards, as Django's middleware sees it (it reads csrf_exempt off it); never called."""
    raise AssertionError("not a view")


_csrf = _CsrfCheck(_view)


def csrf_refusal(scope: dict[str, Any]) -> str | None:
    """Why Django's CSRF rules refuse this request, or None when they let it through."""
    headers = [(name, value) for name, value in scope.get("headers") or [] if name in _CSRF_HEADERS]
    request = ASGIRequest({**scope, "headers": headers}, io.BytesIO())
    try:
        reason = _csrf.process_view(request, _view, (), {})
    except DisallowedHost:
        raise errors.bad_request("Invalid Host header: this server does not answer for that host.") from None
    return reason if isinstance(reason, str) else None


async def session_caller(scope: dict[str, Any], headers: dict[bytes, bytes]) -> Caller:
    """The caller behind the request's session cookie: 401 without a live session, 403 when the
    CSRF check fails (nothing is read, held, woken or forwarded then)."""
    cookies = parse_cookie(headers.get(b"cookie", b"").decode("latin-1"))
    session_key = cookies.get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        raise errors.unauthorized(
            "You didn't provide an API key. Send 'Authorization: Bearer <gpucloud key>', or sign in."
        )
    ensure_listening()
    caller = await _cache.get(session_key, lambda: sync_to_async(_lookup)(session_key))
    if caller is None:
        raise errors.unauthorized("Your session has ended; sign in again, or send 'Authorization: Bearer <key>'.")
    reason = csrf_refusal(scope)
    if reason is not None:
        raise errors.GatewayError(
            403,
            f"CSRF check failed: session-authenticated writes need the X-CSRFToken header ({reason}).",
            type_="invalid_request_error",
            code="csrf_failed",
        )
    return caller


def _forget(change: AccessChange) -> None:
    _cache.forget_where(lambda cached: change.everything or (cached is not None and cached.stale_after(change)))


access_changes.listen(_forget)


def cache_clear() -> None:
    _cache.clear()
