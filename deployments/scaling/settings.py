"""A deployment's autoscaling settings (reference/000 "Auto-Scaling"): read and change them, with
every bound checked before anything is saved."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from deployments.models import Deployment, DeploymentKind, DeploymentStatus, ScalingMetric
from gpucloud.core.errors import ApiError, Conflict, InvalidRequest

IDLE_TIMEOUT_BOUNDS = (60, 7 * 24 * 3600)
TARGET_MAX = 1000.0
COLD_START_WAIT_BOUNDS = (0, 600)  # the gateway's X-Wait-For-Ready allows as much

# Each refusal in two voices: the API's (naming its fields, as `param` does) and the page form's
# (naming what the form's labels say). The rule is checked once, in `_check`.
REFUSALS: dict[str, tuple[str, str]] = {
    "min_range": ("min_replicas must be between 0 and {most}.", "The minimum must be between 0 and {most} replicas."),
    "max_range": ("max_replicas must be between 1 and {most}.", "The maximum must be between 1 and {most} replicas."),
    "min_above_max": (
        "min_replicas ({low}) cannot exceed max_replicas ({high}).",
        "The minimum can't be above the maximum ({low} > {high}).",
    ),
    "zero_needs_flag": (
        "min_replicas 0 needs scale_to_zero: true.",
        "A minimum of 0 replicas needs “Scale to zero after the idle timeout” ticked.",
    ),
    "idle_range": (
        "idle_timeout_seconds must be between {idle_low} and {idle_high}.",
        "The idle timeout must be between {idle_low} seconds and {idle_high} (a week).",
    ),
    "metric": ("target.metric must be one of {metrics}.", "Choose what to scale on: {metrics}."),
    "target_range": (
        "target.value must be above 0 and at most {target_max:g}.",
        "The target per replica must be above 0 and at most {target_max:g}.",
    ),
    "cold_wait_range": (
        "cold_start_wait_seconds must be between {low} and {high} (0: answer 202 at once).",
        "The cold-start wait must be between {low} and {high} seconds (0 answers at once with 202).",
    ),
}


@dataclass(frozen=True)
class Scaling:
    """A deployment's autoscaling settings, as the API answers them and the page's form shows them."""

    min_replicas: int
    max_replicas: int
    scale_to_zero: bool
    idle_timeout_seconds: int
    metric: str
    target: float
    replicas: int  # what it runs now (desired)
    cold_start_wait_seconds: int


def scaling_of(deployment: Deployment) -> Scaling:
    return Scaling(
        min_replicas=deployment.min_replicas,
        max_replicas=deployment.max_replicas,
        scale_to_zero=deployment.scale_to_zero,
        idle_timeout_seconds=deployment.idle_timeout_seconds,
        metric=deployment.scaling_metric,
        target=deployment.scaling_target,
        replicas=deployment.desired_replicas,
        cold_start_wait_seconds=deployment.cold_start_wait_seconds,
    )


@dataclass(frozen=True)
class ScalingChange:
    """What a PATCH asks for; None leaves a setting as it is."""

    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_to_zero: bool | None = None
    idle_timeout_seconds: int | None = None
    metric: str | None = None
    target: float | None = None
    cold_start_wait_seconds: int | None = None


def deployment_scaling_set(
    *, principal: Principal, deployment: Deployment, change: ScalingChange, for_people: bool = False
) -> Deployment:
    """Apply `change` to the deployment's settings; a refusal names the setting and saves nothing
    (in the page form's words with `for_people`, else the API's). The autoscaler moves the
    replicas inside the new bounds at its next check."""
    principal.require(CAN_WRITE, "changing scaling")
    if deployment.kind == DeploymentKind.CONTAINER:  # nothing measures its load: the autoscaler would only shrink it
        raise Conflict(
            "A container endpoint scales manually: POST /api/v1/deployments/{id}/scale with replicas (or PUT "
            "/api/v1/inference-service/{id} with target_instance_number)."
        )
    if deployment.status in (DeploymentStatus.STOPPING, DeploymentStatus.STOPPED, DeploymentStatus.FAILED):
        raise Conflict(f"The deployment is {deployment.status}; deploy it again to scale it.")
    low = deployment.min_replicas if change.min_replicas is None else change.min_replicas
    high = deployment.max_replicas if change.max_replicas is None else change.max_replicas
    to_zero = deployment.scale_to_zero if change.scale_to_zero is None else change.scale_to_zero
    idle = deployment.idle_timeout_seconds if change.idle_timeout_seconds is None else change.idle_timeout_seconds
    metric = deployment.scaling_metric if change.metric is None else change.metric
    target = deployment.scaling_target if change.target is None else change.target
    given = {name for name, value in dataclasses.asdict(change).items() if value is not None}
    _check(low, high, to_zero, idle, metric, target, for_people=for_people, given=given)
    hold = deployment.cold_start_wait_seconds
    if change.cold_start_wait_seconds is not None:
        hold = change.cold_start_wait_seconds
    _check_cold_start_wait(hold, for_people=for_people)
    with transaction.atomic():
        locked = Deployment.objects.select_for_update().get(pk=deployment.pk)
        locked.min_replicas, locked.max_replicas, locked.scale_to_zero = low, high, to_zero
        locked.idle_timeout_seconds, locked.scaling_metric, locked.scaling_target = idle, metric, target
        locked.cold_start_wait_seconds = hold
        locked.save(update_fields=["min_replicas", "max_replicas", "scale_to_zero", "idle_timeout_seconds",
                                   "scaling_metric", "scaling_target", "cold_start_wait_seconds"])  # fmt: skip
    return locked


def _check(
    low: int, high: int, to_zero: bool, idle: int, metric: str, target: float, *, for_people: bool,
    given: set[str] | None = None,
) -> None:  # fmt: skip
    """Refuse settings that cannot hold together. A rule between two settings broken by the request
    alone is a 400 (its description says the rule); one broken by what was sent against what the
    deployment has now (a PATCH of min_replicas above the current maximum) is a 409."""
    most = settings.GPUCLOUD_MAX_REPLICAS

    def refuse(rule: str, param: str, between: tuple[str, ...] = ()) -> ApiError:
        text = REFUSALS[rule][1 if for_people else 0]
        against_current = given is not None and not set(between) <= given
        kind = Conflict if against_current else InvalidRequest
        return kind(text.format(most=most, low=low, high=high, idle_low=IDLE_TIMEOUT_BOUNDS[0],
                                idle_high=IDLE_TIMEOUT_BOUNDS[1], target_max=TARGET_MAX,
                                metrics=", ".join(ScalingMetric.values)), param=param)  # fmt: skip

    if not 0 <= low <= most:
        raise refuse("min_range", "min_replicas")
    if not 1 <= high <= most:
        raise refuse("max_range", "max_replicas")
    if low > high:
        raise refuse("min_above_max", "min_replicas", ("min_replicas", "max_replicas"))
    if low == 0 and not to_zero:
        raise refuse("zero_needs_flag", "min_replicas", ("min_replicas", "scale_to_zero"))
    if not IDLE_TIMEOUT_BOUNDS[0] <= idle <= IDLE_TIMEOUT_BOUNDS[1]:
        raise refuse("idle_range", "idle_timeout_seconds")
    if metric not in ScalingMetric.values:
        raise refuse("metric", "target")
    if not 0 < target <= TARGET_MAX:
        raise refuse("target_range", "target")


def _check_cold_start_wait(seconds: int, *, for_people: bool) -> None:
    low, high = COLD_START_WAIT_BOUNDS
    if not low <= seconds <= high:
        text = REFUSALS["cold_wait_range"][1 if for_people else 0]
        raise InvalidRequest(text.format(low=low, high=high), param="cold_start_wait_seconds")
