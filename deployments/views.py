"""Pages of deployments: the list, one deployment in detail, stopping one (with a confirmation
step that works without JavaScript). Thin: parse, call a service or selector, render."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from accounts.auth import principal_from_session
from accounts.principal import Principal
from accounts.roles import CAN_WRITE, role_at_least
from deployments import metrics, selectors, services
from deployments.models import Deployment
from gpucloud.errors import ApiError, NotFound

EVENTS_SHOWN = 50


def _deployment(principal: Principal, deployment_id: str) -> Deployment:
    try:
        return selectors.deployment_get_for_org(principal.org, deployment_id)
    except NotFound:
        raise Http404("No such deployment in this organization.") from None


@login_required
@require_GET
def deployments_list(request: HttpRequest) -> HttpResponse:
    principal = principal_from_session(request)
    return render(request, "deployments/list.html", {"rows": selectors.deployment_rows(principal.org)})


@login_required
@require_GET
def deployment_detail(request: HttpRequest, deployment_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = _deployment(principal, deployment_id)
    now = timezone.now()
    end = deployment.stopped_at or now
    context = {
        "deployment": deployment,
        "row": selectors.deployment_row(deployment, now=now),
        "instances": list(selectors.instances_of(deployment)),
        "events": list(deployment.events.order_by("-at", "-pk")[:EVENTS_SHOWN]),
        "stats": metrics.deployment_window(deployment, since=now - timedelta(hours=24), until=now),
        "base_url": request.build_absolute_uri("/v1"),
        "model_name": deployment.model_id or deployment.pk,
        "runtime": (end - deployment.started_at) if deployment.started_at else None,
        "can_write": role_at_least(principal.role, CAN_WRITE),
    }
    return render(request, "deployments/detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def deployment_stop(request: HttpRequest, deployment_id: str) -> HttpResponse:
    """GET asks for confirmation; POST tears the deployment down (billing stops as each replica's
    termination is confirmed)."""
    principal = principal_from_session(request)
    deployment = _deployment(principal, deployment_id)
    if request.method == "GET":
        return render(
            request, "deployments/stop.html", {"deployment": deployment, "row": selectors.deployment_row(deployment)}
        )
    try:
        services.deployment_delete(principal=principal, deployment=deployment)
    except ApiError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Stopping {deployment.name}: billing ends as each replica's shutdown is confirmed.")
    return redirect("deployment_detail", deployment_id=deployment.pk)
