from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accounts.auth import principal_from_session
from accounts.selectors import memberships_for_user
from billing import stripe_gateway
from billing.selectors import balance_ticker


def current_org(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's current org and their other orgs, for the navigation bar."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    principal = principal_from_session(request)
    return {
        "principal": principal,
        "current_org": principal.org,
        "user_memberships": memberships_for_user(request.user),
        # Without card payments there is nothing to add funds with: no "Add funds" in the header.
        "payments_configured": stripe_gateway.is_configured(),
        # The header's ticking balance: read only when a full page renders it, not for htmx partials.
        "header_balance": SimpleLazyObject(lambda: balance_ticker(principal.org)),
    }
