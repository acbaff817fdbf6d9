"""The "New container endpoint" page: the form (GET) and its post (POST) at one address. Thin: parse,
call deployments.containers.container_deploy, render. A refusal re-renders the form with what was
typed and the message beside the field the service named, nothing made; success redirects to the
endpoint's deployment page (post/redirect/get)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.auth import principal_from_session
from accounts.roles import CAN_WRITE, role_at_least
from deployments import containers
from gpucloud.core.errors import ApiError
from pages.container_form import FIELDS, ContainerForm, form_context


@login_required
@require_http_methods(["GET", "POST"])
def container_new(request: HttpRequest) -> HttpResponse:
    principal = principal_from_session(request)
    can_write = role_at_least(principal.role, CAN_WRITE)
    if request.method == "GET":
        context = {**form_context(None, {}), "can_write": can_write}
        return render(request, "deployments/container_new.html", context)
    form = ContainerForm.posted(request.POST)
    try:
        asked, where = form.asked()
        deployment = containers.container_deploy(principal=principal, asked=asked, where=where)
    except ApiError as exc:
        field = exc.param if exc.param in FIELDS else "form"
        context = {**form_context(form, {field: exc.message}), "can_write": can_write}
        return render(request, "deployments/container_new.html", context, status=exc.status)
    messages.success(request, f"Creating {deployment.name}: it answers at its URL below once a replica is ready.")
    return redirect("deployment_detail", deployment_id=deployment.pk)
