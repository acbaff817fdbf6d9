"""The deployment page's webhook forms (add, test, delete): each answers with the deployment page,
the secret of a new webhook shown once, a refusal inline with what was typed."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.auth import principal_from_session
from gpucloud.core.errors import ApiError
from pages.deployments.views import deployment_for_page, detail_page
from webhooks import services


@login_required
@require_POST
def webhook_add(request: HttpRequest, deployment_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    url, events, schedule = (
        request.POST.get("url", ""),
        request.POST.getlist("events"),
        request.POST.get("retry_schedule"),
    )
    posted = {"url": url, "events": events, "retry_schedule": schedule or ""}
    try:
        subscription = services.subscription_create(
            principal=principal, deployment=deployment, url=url, events=events, retry_schedule=schedule or None
        )
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, webhook_error=exc.message,
                           webhook_posted=posted)  # fmt: skip
    return detail_page(request, principal, deployment, new_webhook=subscription)


@login_required
@require_POST
def webhook_test(request: HttpRequest, deployment_id: str, webhook_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    try:
        subscription = services.subscription_get(deployment, webhook_id)
        delivery = services.subscription_test(principal=principal, subscription=subscription)
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, webhook_error=exc.message)
    if delivery.status == "succeeded":
        notice = f"Test event delivered to {subscription.url}: {delivery.last_response_code}."
    else:
        notice = f"Test event not delivered: {delivery.last_error or 'no answer'}. It will be retried on the schedule."
    return detail_page(request, principal, deployment, webhook_notice=notice,
                       webhook_notice_ok=delivery.status == "succeeded")  # fmt: skip


@login_required
@require_POST
def webhook_delete(request: HttpRequest, deployment_id: str, webhook_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    try:
        subscription = services.subscription_get(deployment, webhook_id)
        services.subscription_delete(principal=principal, subscription=subscription)
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, webhook_error=exc.message)
    return redirect(reverse("deployment_detail", args=[deployment.pk]) + "#webhooks-h")
