"""allauth hooks: every new user gets a personal org; signing in with a verified address
accepts that address's pending invitations, and so does signing in (or up) from an invitation's
link, which proves the invited address. Whoever joined an org this way starts working in it.

Failed sign-ins are counted per client address and account (allauth's `login_failed`, keyed by both),
so wrong passwords typed elsewhere never lock the owner out, and per account across all addresses
(`login_failed_account`, a threshold one address cannot reach inside its own limit), so a guess spread
over many addresses stays slow too. The rates are in settings.ACCOUNT_RATE_LIMITS."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core import ratelimit
from allauth.core.internal.ratelimit import get_ip
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest

from accounts import services
from accounts.auth import SESSION_ORG_KEY
from accounts.invitation_links import SESSION_INVITATION_KEY, invitation_from_token
from accounts.models import Membership, User
from gpucloud.core.errors import ApiError

ACCOUNT_FAILURES = "login_failed_account"


class AccountAdapter(DefaultAccountAdapter):
    def _get_login_attempts_cache_key(self, request: HttpRequest, **credentials: Any) -> str:
        return f"{get_ip(request)}|{self._account_key(request, **credentials)}"

    def _account_key(self, request: HttpRequest, **credentials: Any) -> str:
        return super()._get_login_attempts_cache_key(request, **credentials)

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        super().pre_authenticate(request, **credentials)
        account = self._account_key(request, **credentials)
        if not ratelimit.consume(request, action=ACCOUNT_FAILURES, key=account, dry_run=True):
            raise self.validation_error("too_many_login_attempts")

    def authentication_failed(self, request: HttpRequest, **credentials: Any) -> None:
        ratelimit.consume(request, action=ACCOUNT_FAILURES, key=self._account_key(request, **credentials))

    def _delete_login_attempts_cached_email(self, request: HttpRequest, **credentials: Any) -> None:
        """A password reset (allauth's only caller) clears this address's count and the account's."""
        super()._delete_login_attempts_cached_email(request, **credentials)
        ratelimit.clear(request, action=ACCOUNT_FAILURES, key=self._account_key(request, **credentials))

    def save_user(self, request: HttpRequest, user: User, form: Any, commit: bool = True) -> User:
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=commit)
            if commit:
                services.organization_create_personal(user=user)
        return user

    def login(self, request: HttpRequest, user: User) -> None:
        super().login(request, user)
        services.organization_create_personal(user=user)
        joined = self._accept_from_link(request, user) + services.invitations_accept_for_user(user=user)
        if joined:
            first = joined[0]
            request.session[SESSION_ORG_KEY] = first.org_id
            messages.success(
                request,
                f"Welcome to {first.org.name}: you joined as {first.get_role_display().lower()} "
                "and are working in it now. Your personal workspace is in the organization menu.",
            )

    def _accept_from_link(self, request: HttpRequest, user: User) -> list[Membership]:
        """The invitation whose link this browser opened before signing in, if it is for this user."""
        invitation = invitation_from_token(request.session.pop(SESSION_INVITATION_KEY, ""))
        if invitation is None or not invitation.is_pending:
            return []
        try:
            return [services.invitation_accept(invitation=invitation, user=user)]
        except ApiError:  # someone else's invitation: the invitation page says so when reopened
            return []


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def save_user(self, request: HttpRequest, sociallogin: Any, form: Any = None) -> User:
        with transaction.atomic():
            user = super().save_user(request, sociallogin, form)
            services.organization_create_personal(user=user)
        return user
