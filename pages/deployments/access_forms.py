"""The deployment page's Access forms: grant a scoped key this deployment, or revoke the grant
(admins and owners; accounts/grants.py decides). Each answers with the deployment page."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import grants
from accounts.auth import principal_from_session
from accounts.models import GrantRole
from gpucloud.core.errors import ApiError
from pages.deployments.views import deployment_for_page, detail_page


@login_required
@require_POST
def deployment_grant(request: HttpRequest, deployment_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    try:
        grants.key_grant_create(principal=principal, deployment=deployment, key_id=request.POST.get("key_id", ""),
                                role=GrantRole.INFERENCE)  # fmt: skip
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, access_error=exc.message)
    return redirect(reverse("deployment_detail", args=[deployment.pk]) + "#access-h")


@login_required
@require_POST
def deployment_grant_revoke(request: HttpRequest, deployment_id: str, key_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    try:
        grants.key_grant_revoke(principal=principal, deployment=deployment, key_id=key_id)
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, access_error=exc.message)
    return redirect(reverse("deployment_detail", args=[deployment.pk]) + "#access-h")
