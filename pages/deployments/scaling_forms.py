"""The deployment page's Scaling and SLA forms: autoscaling settings, SLA targets, and the preset
(a rolling replacement of the replicas). Each posts the whole form; a refusal, the form's own
(a field empty or not a number) or the service's, is shown inline with what was typed and saves
nothing; a change answers with the deployment page at the section."""

from __future__ import annotations

import math

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.auth import principal_from_session
from deployments import preset_rollout as rollout
from deployments import sla
from deployments.models import Deployment
from deployments.scaling import settings as scaling
from gpucloud.core.errors import ApiError, InvalidRequest
from pages.deployments.views import deployment_for_page, detail_page

SCALING_FIELDS = ("min_replicas", "max_replicas", "idle_timeout_seconds", "metric", "target")
# The SLA form: field -> (its name in messages, whole numbers only). An empty field removes the target.
SLA_FIELDS = {
    "ttft_target_ms": ("Time to first token target (ms)", True),
    "throughput_target_tps": ("Throughput target (tokens/s)", False),
    "concurrency_limit": ("Concurrency limit", True),
}


@login_required
@require_POST
def deployment_scaling(request: HttpRequest, deployment_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    form = request.POST
    posted: dict[str, object] = {name: form.get(name, "") for name in SCALING_FIELDS}
    posted["scale_to_zero"] = "scale_to_zero" in form  # an unticked box is not posted
    try:
        change = scaling.ScalingChange(
            min_replicas=_whole(form, "min_replicas", "Minimum replicas"),
            max_replicas=_whole(form, "max_replicas", "Maximum replicas"),
            scale_to_zero=bool(posted["scale_to_zero"]),
            idle_timeout_seconds=_whole(form, "idle_timeout_seconds", "Idle timeout (seconds)"),
            metric=form.get("metric") or None,
            target=_number(form, "target", "Target per replica"),
        )
        scaling.deployment_scaling_set(principal=principal, deployment=deployment, change=change)
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, scaling_error=exc.message,
                           scaling_param=exc.param or "", scaling_posted=posted)  # fmt: skip
    return _to_section(deployment)


@login_required
@require_POST
def deployment_sla(request: HttpRequest, deployment_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    form = request.POST
    posted = {name: form.get(name, "") for name in SLA_FIELDS}
    try:
        changes = {
            name: (_whole if whole else _number)(form, name, label, optional=True)
            for name, (label, whole) in SLA_FIELDS.items()
        }
        sla.deployment_sla_set(principal=principal, deployment=deployment, changes=changes)
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, sla_error=exc.message,
                           sla_param=exc.param or "", sla_posted=posted)  # fmt: skip
    return _to_section(deployment)


@login_required
@require_POST
def deployment_preset(request: HttpRequest, deployment_id: str) -> HttpResponse:
    principal = principal_from_session(request)
    deployment = deployment_for_page(principal, deployment_id)
    preset = request.POST.get("preset", "")
    try:
        rollout.deployment_preset_set(principal=principal, deployment=deployment, preset=preset or None)
    except ApiError as exc:
        return detail_page(request, principal, deployment, exc.status, preset_error=exc.message,
                           preset_posted={"preset": preset})  # fmt: skip
    return _to_section(deployment)


def _to_section(deployment: Deployment) -> HttpResponse:
    return redirect(reverse("deployment_detail", args=[deployment.pk]) + "#scaling-h")


def _number(form: QueryDict, name: str, label: str, *, optional: bool = False, whole: bool = False) -> float | None:
    """The field as a finite number (`whole`: an integer); empty is None when `optional`, else
    refused. A refusal is a 400 naming the field."""
    text = form.get(name, "").strip()
    kind = "a whole number" if whole else "a number"
    if not text:
        if optional:
            return None
        raise InvalidRequest(f"{label} is empty: enter {kind}.", param=name)
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or (whole and not number.is_integer()):
        raise InvalidRequest(f"{label} must be {kind}, not {text!r}.", param=name)
    return number


def _whole(form: QueryDict, name: str, label: str, *, optional: bool = False) -> int | None:
    number = _number(form, name, label, optional=optional, whole=True)
    return None if number is None else int(number)
