"""A deployment's autoscaling settings (reference/000 "Auto-Scaling"): read and change them, with
every bound checked before anything is saved."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import transaction

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from deployments.models import Deployment, DeploymentStatus, ScalingMetric
from gpucloud.core.errors import Conflict, InvalidRequest

IDLE_TIMEOUT_BOUNDS = (60, 7 * 24 * 3600)
TARGET_MAX = 1000.0
COLD_START_WAIT_BOUNDS = (0, 600)  # the gateway's X-Wait-For-Ready allows as much


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


def deployment_scaling_set(*, principal: Principal, deployment: Deployment, change: ScalingChange) -> Deployment:
    """Apply `change` to the deployment's settings; a refusal names the setting and saves nothing.
    The autoscaler moves the replicas inside the new bounds at its next check."""
    principal.require(CAN_WRITE, "changing scaling")
    if deployment.status in (DeploymentStatus.STOPPING, DeploymentStatus.STOPPED, DeploymentStatus.FAILED):
        raise Conflict(f"The deployment is {deployment.status}; deploy it again to scale it.")
    low = deployment.min_replicas if change.min_replicas is None else change.min_replicas
    high = deployment.max_replicas if change.max_replicas is None else change.max_replicas
    to_zero = deployment.scale_to_zero if change.scale_to_zero is None else change.scale_to_zero
    idle = deployment.idle_timeout_seconds if change.idle_timeout_seconds is None else change.idle_timeout_seconds
    metric = deployment.scaling_metric if change.metric is None else change.metric
    target = deployment.scaling_target if change.target is None else change.target
    _check(low, high, to_zero, idle, metric, target)
    hold = deployment.cold_start_wait_seconds
    if change.cold_start_wait_seconds is not None:
        hold = change.cold_start_wait_seconds
    _check_cold_start_wait(hold)
    with transaction.atomic():
        locked = Deployment.objects.select_for_update().get(pk=deployment.pk)
        locked.min_replicas, locked.max_replicas, locked.scale_to_zero = low, high, to_zero
        locked.idle_timeout_seconds, locked.scaling_metric, locked.scaling_target = idle, metric, target
        locked.cold_start_wait_seconds = hold
        locked.save(update_fields=["min_replicas", "max_replicas", "scale_to_zero", "idle_timeout_seconds",
                                   "scaling_metric", "scaling_target", "cold_start_wait_seconds"])  # fmt: skip
    return locked


def _check(low: int, high: int, to_zero: bool, idle: int, metric: str, target: float) -> None:
    most = settings.GPUCLOUD_MAX_REPLICAS
    if not 0 <= low <= most:
        raise InvalidRequest(f"min_replicas must be between 0 and {most}.", param="min_replicas")
    if not 1 <= high <= most:
        raise InvalidRequest(f"max_replicas must be between 1 and {most}.", param="max_replicas")
    if low > high:
        raise InvalidRequest(f"min_replicas ({low}) cannot exceed max_replicas ({high}).", param="min_replicas")
    if low == 0 and not to_zero:
        raise InvalidRequest("min_replicas 0 needs scale_to_zero: true.", param="min_replicas")
    if not IDLE_TIMEOUT_BOUNDS[0] <= idle <= IDLE_TIMEOUT_BOUNDS[1]:
        raise InvalidRequest(
            f"idle_timeout_seconds must be between {IDLE_TIMEOUT_BOUNDS[0]} and {IDLE_TIMEOUT_BOUNDS[1]}.",
            param="idle_timeout_seconds",
        )
    if metric not in ScalingMetric.values:
        raise InvalidRequest(f"target.metric must be one of {', '.join(ScalingMetric.values)}.", param="target")
    if not 0 < target <= TARGET_MAX:
        raise InvalidRequest(f"target.value must be above 0 and at most {TARGET_MAX:g}.", param="target")


def _check_cold_start_wait(seconds: int) -> None:
    low, high = COLD_START_WAIT_BOUNDS
    if not low <= seconds <= high:
        raise InvalidRequest(
            f"cold_start_wait_seconds must be between {low} and {high} (0: answer 202 at once).",
            param="cold_start_wait_seconds",
        )
