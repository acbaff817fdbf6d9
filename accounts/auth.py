"""Authentication of the management API: bearer API keys first, then the browser session.

Each failure says what is wrong (wrong key, revoked key, missing key) with a 401; a
deployment key or another scoped key on the management API is a 403, since it is valid but not
allowed here. On inference routes a scoped key is let through only to a deployment it may invoke.
"""

from __future__ import annotations

import hmac
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from accounts import grants, keys, selectors, services
from accounts.models import ApiKey, ApiKeyKind, User
from accounts.principal import Principal
from accounts.roles import CAN_INVOKE, Role
from gpucloud.core.errors import PermissionDenied, Unauthenticated

_INVALID_KEY = (
    "Invalid API key. Check that it was copied in full; gpucloud keys start with gpc_live_ (account) "
    "or gpc_dep_ (deployment)."
)
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}


def api_key_lookup(token: str) -> ApiKey:
    """The active key for `token`, or Unauthenticated with the reason."""
    if keys.key_kind(token) is None:  # malformed or bad checksum: no database round trip
        raise Unauthenticated(_INVALID_KEY)
    digest = keys.key_hash(token)
    key = ApiKey.objects.select_related("org", "created_by", "deployment").filter(key_hash=digest).first()
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        raise Unauthenticated(_INVALID_KEY)
    if key.revoked_at is not None:
        raise Unauthenticated(
            f"This API key ({key.masked}, {key.name!r}) was revoked on {key.revoked_at:%Y-%m-%d %H:%M} UTC; "
            "create a new key on the API keys page."
        )
    return key


def principal_from_api_key(token: str) -> Principal:
    key = api_key_lookup(token)
    if key.kind == ApiKeyKind.DEPLOYMENT:
        principal = Principal(user=key.created_by, org=key.org, role=Role.VIEWER, api_key=key)
    else:
        # An account key acts with its creator's *current* role: removing a person from the
        # org disables their keys, and a key never grants more than its creator holds.
        membership = selectors.membership_for(key.created_by, key.org_id) if key.created_by else None
        if membership is None:
            raise Unauthenticated(
                f"This API key's creator is no longer a member of {key.org.name!r}, so the key no longer works."
            )
        principal = Principal(user=key.created_by, org=key.org, role=membership.role, api_key=key)
    services.api_key_touch(key=key, min_interval_seconds=settings.GPUCLOUD_API_KEY_TOUCH_SECONDS)
    return principal


def principal_from_session(request: HttpRequest) -> Principal:
    """The signed-in user acting in the org chosen in their session (their personal org by default).
    Read once per request (the view, the navigation and the header all ask)."""
    user = request.user
    assert isinstance(user, User)
    org_id = request.session.get(SESSION_ORG_KEY)
    cached = getattr(request, "_gpucloud_principal", None)
    if cached is not None and cached[0] == (user.pk, org_id):
        return cached[1]
    principal = _principal_of_session(user, org_id)
    request._gpucloud_principal = ((user.pk, org_id), principal)  # type: ignore[attr-defined]
    return principal


def _principal_of_session(user: User, org_id: str | None) -> Principal:
    membership = selectors.membership_for(user, org_id) if org_id else None
    if membership is None:
        membership = selectors.default_membership(user)
    if membership is None:  # e.g. removed from every org: restore the personal-org invariant
        services.organization_create_personal(user=user)
        membership = selectors.default_membership(user)
        assert membership is not None
    return Principal(user=user, org=membership.org, role=membership.role)


SESSION_ORG_KEY = "current_org_id"


class _StoredSession:
    """What django.contrib.auth.get_user reads of a request: its session."""

    def __init__(self, session: SessionBase) -> None:
        self.session = session


def principal_from_session_key(session_key: str) -> Principal | None:
    """The signed-in user behind a session cookie, acting in the session's current org as the pages
    decide it; None when the session does not exist, expired, or was signed out (Django's own rules:
    the session's auth hash must still match the user's password, the user must be active). For a
    caller outside Django's request cycle: the gateway."""
    store: SessionBase = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(_StoredSession(store))  # type: ignore[arg-type]  # it reads request.session only
    if not isinstance(user, User):
        return None
    return _principal_of_session(user, store.get(SESSION_ORG_KEY))


class ApiKeyAuth(HttpBearer):
    """`Authorization: Bearer gpc_live_...`"""

    def __call__(self, request: HttpRequest) -> Any:
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("Malformed Authorization header; expected 'Authorization: Bearer <key>'.")
        return self.authenticate(request, token.strip())

    def authenticate(self, request: HttpRequest, token: str) -> Principal:
        principal = principal_from_api_key(token)
        if principal.via_deployment_key:
            raise PermissionDenied(
                "Deployment keys can only call the inference API under /v1/; use an account key (gpc_live_) here."
            )
        if principal.via_scoped_key:
            raise PermissionDenied(grants.SCOPED_KEY_REFUSED)
        return principal


class InferenceKeyAuth(ApiKeyAuth):
    """Bearer auth for inference routes (`/deployments/{deployment_id}/...`): account keys, and
    scoped keys on the deployments they may invoke, checked here so that no route can forget it."""

    def authenticate(self, request: HttpRequest, token: str) -> Principal:
        principal = principal_from_api_key(token)
        if principal.via_scoped_key:
            assert principal.api_key is not None
            match = request.resolver_match
            deployment_id = match.kwargs.get("deployment_id") if match else None
            grants.scoped_key_invoke_check(key=principal.api_key, deployment_id=deployment_id)
            if not principal.via_deployment_key:  # a key never does more than its creator may
                principal.require(CAN_INVOKE, "invoking deployments")
        return principal


class SessionAuth(APIKeyCookie):
    """The browser session of a signed-in user; writes must carry the CSRF token."""

    param_name = settings.SESSION_COOKIE_NAME

    def __call__(self, request: HttpRequest) -> Any:
        if not request.user.is_authenticated:
            return None
        if request.method not in _SAFE_METHODS and check_csrf(request):
            raise PermissionDenied("CSRF check failed: session-authenticated writes need the X-CSRFToken header.")
        return principal_from_session(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:  # pragma: no cover - __call__ decides
        return None


def api_principal(request: HttpRequest) -> Principal:
    """The caller an API route's auth resolved (ninja stores it on request.auth)."""
    principal = request.auth  # type: ignore[attr-defined]
    assert isinstance(principal, Principal)
    return principal


API_AUTH = [ApiKeyAuth(), SessionAuth()]
INFERENCE_AUTH = [InferenceKeyAuth(), SessionAuth()]
