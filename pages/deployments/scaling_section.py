"""What the deployment page's Scaling and SLA section shows: the autoscaling settings in words, the
SLA report, the presets it may move to, and the forms' values (what was posted when a change was
refused, else the current settings). The forms themselves post to pages/deployments/scaling_forms.py."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from catalog import selectors as catalog_selectors
from catalog.models import Preset
from deployments import sla
from deployments.containers import STARTABLE
from deployments.models import Deployment, DeploymentKind, DeploymentStatus, ScalingMetric
from deployments.scaling.settings import scaling_of
from deployments.selectors import RUNNING_STATUSES
from gpucloud.core.durations import duration_text

SETTINGS_CLOSED = (DeploymentStatus.STOPPING, DeploymentStatus.STOPPED, DeploymentStatus.FAILED)
METRIC_TEXT: dict[str, str] = {
    ScalingMetric.CONCURRENCY: "requests in flight",
    ScalingMetric.QUEUE_DEPTH: "requests waiting",
}


def settings_context(
    deployment: Deployment, *, now: datetime, can_write: bool, extra: dict[str, object]
) -> dict[str, object]:
    """The Scaling and SLA section: the settings in words, the SLA report, and the forms' values
    (what was posted when a change was refused, else the current settings)."""
    closed = deployment.status in SETTINGS_CLOSED
    container = deployment.kind == DeploymentKind.CONTAINER
    takes_preset = can_write and not closed and deployment.model_id is not None and not deployment.is_rolling
    return {
        "serverless": deployment.kind == DeploymentKind.SERVERLESS,
        # A container endpoint has no autoscaler: its replicas are what its owner sets, running or stopped.
        "is_container": container,
        "replicas_open": can_write and container and _replicas_settable(deployment),
        "replicas_form": {"replicas": deployment.desired_replicas, **_posted(extra, "replicas_posted")},
        "scaling_summary": scaling_summary(deployment),
        "scaling_metrics": list(METRIC_TEXT.items()),
        "replicas_limit": settings.GPUCLOUD_MAX_REPLICAS,
        "sla": sla.sla_report(deployment, now=now),
        "settings_closed": closed,
        "presets": _presets_offered(deployment) if takes_preset else [],
        "scaling_form": {**_scaling_values(deployment), **_posted(extra, "scaling_posted")},
        "sla_form": {**_sla_values(deployment), **_posted(extra, "sla_posted")},
        "preset_chosen": _posted(extra, "preset_posted").get("preset", deployment.preset_id or ""),
    }


def _replicas_settable(deployment: Deployment) -> bool:
    """Running, or stopped and kept (a deleted one is not): what containers.container_scale takes."""
    settable = deployment.status in (*RUNNING_STATUSES, *STARTABLE)
    return settable and not deployment.pod.terminated


def scaling_summary(deployment: Deployment) -> str:
    """The autoscaling settings in words: "1 to 3 replicas, scales to zero after 15 min idle, target 4
    requests in flight per replica"."""
    low, high = deployment.min_replicas, deployment.max_replicas
    parts = [f"{low} to {high} replicas" if low != high else f"{high} replica{'' if high == 1 else 's'}, fixed"]
    if deployment.scale_to_zero and low == 0:
        parts.append(f"scales to zero after {idle_text(deployment.idle_timeout_seconds)} idle")
    if high > max(low, 1):  # room to follow the load
        metric = METRIC_TEXT.get(deployment.scaling_metric, deployment.scaling_metric)
        parts.append(f"target {deployment.scaling_target:g} {metric} per replica")
    return ", ".join(parts)


def idle_text(seconds: int) -> str:
    """900 -> '15 min', 7200 -> '2 h', 90 -> '1 min 30 s'."""
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else duration_text(seconds)


def _presets_offered(deployment: Deployment) -> list[Preset]:
    """The presets whose GPU holds the model, as the model's page offers them (the rollout refuses
    one not offered in the deployment's region, with the reason)."""
    model = deployment.model
    assert model is not None
    return list(catalog_selectors.presets_list().filter(gpu_type__vram_gb__gte=model.min_vram_gb))


def _scaling_values(deployment: Deployment) -> dict[str, object]:
    """The form's fields: the API's settings, the target as typed (4, not 4.0)."""
    current = scaling_of(deployment)
    return {**vars(current), "target": f"{current.target:g}"}


def _sla_values(deployment: Deployment) -> dict[str, object]:
    tps = deployment.throughput_target_tps
    return {
        "ttft_target_ms": deployment.ttft_target_ms or "",
        "throughput_target_tps": "" if tps is None else f"{tps:g}",
        "concurrency_limit": deployment.concurrency_limit or "",
    }


def _posted(extra: dict[str, object], name: str) -> dict[str, object]:
    posted = extra.get(name)
    return posted if isinstance(posted, dict) else {}
