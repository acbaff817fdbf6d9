"""allauth hooks: every new user gets a personal org; signing in with a verified address
accepts that address's pending invitations."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.db import transaction
from django.http import HttpRequest

from accounts import services
from accounts.models import User


class AccountAdapter(DefaultAccountAdapter):
    def save_user(self, request: HttpRequest, user: User, form: Any, commit: bool = True) -> User:
        with transaction.atomic():
            user = super().save_user(request, user, form, commit=commit)
            if commit:
                services.organization_create_personal(user=user)
        return user

    def login(self, request: HttpRequest, user: User) -> None:
        super().login(request, user)
        services.organization_create_personal(user=user)
        services.invitations_accept_for_user(user=user)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def save_user(self, request: HttpRequest, sociallogin: Any, form: Any = None) -> User:
        with transaction.atomic():
            user = super().save_user(request, sociallogin, form)
            services.organization_create_personal(user=user)
        return user
