"""The deployment page's Scaling and SLA forms: autoscaling settings (a container endpoint's replica
count instead), SLA targets, and the preset (a rolling replacement of the replicas). Each posts the
whole form; a refusal, the form's own (a field empty or not a number) or the service's, is shown
inline with what was typed and saves nothing; a change answers with the deployment page at the
section."""

from __future__ import annotations

import math

from django.http import QueryDict

from deployments import containers, preset_rollout, sla
from deployments.scaling import settings as scaling
from gpucloud.core.errors import InvalidRequest
from pages.deployments.section_forms import SectionPost, section_form

SECTION = "#scaling-h"
SCALING_FIELDS = ("min_replicas", "max_replicas", "idle_timeout_seconds", "metric", "target", "cold_start_wait_seconds")
# The SLA form: field -> (its name in messages, whole numbers only). An empty field removes the target.
SLA_FIELDS = {
    "ttft_target_ms": ("Time to first token target (ms)", True),
    "throughput_target_tps": ("Throughput target (tokens/s)", False),
    "concurrency_limit": ("Concurrency limit", True),
}


@section_form("scaling", anchor=SECTION)
def deployment_scaling(post: SectionPost) -> None:
    form = post.form
    post.posted = {name: form.get(name, "") for name in SCALING_FIELDS}
    post.posted["scale_to_zero"] = "scale_to_zero" in form  # an unticked box is not posted
    change = scaling.ScalingChange(
        min_replicas=_whole(form, "min_replicas", "Minimum replicas"),
        max_replicas=_whole(form, "max_replicas", "Maximum replicas"),
        scale_to_zero=bool(post.posted["scale_to_zero"]),
        idle_timeout_seconds=_whole(form, "idle_timeout_seconds", "Idle timeout (seconds)"),
        metric=form.get("metric") or None,
        target=_number(form, "target", "Target per replica"),
        # Absent from an older form: left as it is.
        cold_start_wait_seconds=_whole(
            form, "cold_start_wait_seconds", "Hold requests while waking (seconds)", optional=True
        ),
    )
    scaling.deployment_scaling_set(principal=post.principal, deployment=post.deployment, change=change, for_people=True)


@section_form("replicas", anchor=SECTION)
def deployment_replicas(post: SectionPost) -> None:
    """A container endpoint's replicas, as POST /api/v1/deployments/{id}/scale sets them."""
    post.posted = {"replicas": post.form.get("replicas", "")}
    replicas = _whole(post.form, "replicas", "Replicas")
    assert replicas is not None  # not optional: an empty field is refused
    containers.container_scale(
        principal=post.principal, deployment=post.deployment, replicas=replicas, fields=containers.OURS
    )


@section_form("sla", anchor=SECTION)
def deployment_sla(post: SectionPost) -> None:
    form = post.form
    post.posted = {name: form.get(name, "") for name in SLA_FIELDS}
    changes = {
        name: (_whole if whole else _number)(form, name, label, optional=True)
        for name, (label, whole) in SLA_FIELDS.items()
    }
    sla.deployment_sla_set(principal=post.principal, deployment=post.deployment, changes=changes, for_people=True)


@section_form("preset", anchor=SECTION)
def deployment_preset(post: SectionPost) -> None:
    preset = post.form.get("preset", "")
    post.posted = {"preset": preset}
    preset_rollout.deployment_preset_set(principal=post.principal, deployment=post.deployment, preset=preset or None)


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
