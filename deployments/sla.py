"""SLA targets per deployment (reference/000 "SLA"): time to first token (p95, ms) and generation
speed (tokens/s per request), checked every minute against the last five minutes the gateway
measured. A missed target opens a breach (time, metric, target, measured); the first check that
meets it again closes it. A window without traffic is not judged. The concurrency limit is the
gateway's (429 + Retry-After beyond it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from deployments.metrics import Window, deployment_window
from deployments.models import Deployment, SlaBreach, SlaMetric
from deployments.selectors import RUNNING_STATUSES
from gpucloud.core.errors import InvalidRequest
from webhooks.events import deployment_event_emit

CHECK_WINDOW = timedelta(minutes=5)
HISTORY_SHOWN = 50
BOUNDS: dict[str, tuple[float, float]] = {
    "ttft_target_ms": (1, 600_000),
    "throughput_target_tps": (0.001, 100_000),
    "concurrency_limit": (1, 100_000),
}


# How the page form names each target in a refusal (the API names its field).
LABELS = {
    "ttft_target_ms": "The time to first token target (ms)",
    "throughput_target_tps": "The throughput target (tokens/s)",
    "concurrency_limit": "The concurrency limit",
}


def deployment_sla_set(
    *, principal: Principal, deployment: Deployment, changes: dict[str, Any], for_people: bool = False
) -> Deployment:
    """Set the targets named in `changes` (None removes one); a value out of bounds refuses them all
    (in the page form's words with `for_people`, else the API's)."""
    principal.require(CAN_WRITE, "changing SLA targets")
    for name, value in changes.items():
        low, high = BOUNDS[name]
        if value is not None and not low <= value <= high:
            if for_people:
                message = f"{LABELS[name]} must be between {low:g} and {high:g}; leave it empty for no target."
            else:
                message = f"{name} must be between {low:g} and {high:g}, or null to remove it."
            raise InvalidRequest(message, param=name)
    with transaction.atomic():
        locked = Deployment.objects.select_for_update().get(pk=deployment.pk)
        for name, value in changes.items():
            setattr(locked, name, value)
        if changes:
            locked.save(update_fields=list(changes))
    return locked


@dataclass(frozen=True)
class Measured:
    ttft_ms: float | None
    throughput_tps: float | None


def measured(deployment: Deployment, *, now: datetime) -> Measured:
    window: Window = deployment_window(deployment, since=now - CHECK_WINDOW, until=now)
    return Measured(ttft_ms=window.ttft_ms_p95, throughput_tps=window.tokens_per_second)


def sla_check(deployment: Deployment, *, now: datetime | None = None) -> list[tuple[str, SlaBreach]]:
    """Compare the last window with the targets; returns what happened: ("breach" | "recovered", row)."""
    now = now or timezone.now()
    seen = measured(deployment, now=now)
    happened: list[tuple[str, SlaBreach]] = []
    checks = (
        (SlaMetric.TTFT, deployment.ttft_target_ms, seen.ttft_ms, lambda m, t: m > t),
        (SlaMetric.THROUGHPUT, deployment.throughput_target_tps, seen.throughput_tps, lambda m, t: m < t),
    )
    for metric, target, value, misses in checks:
        if target is None or value is None:
            continue
        open_breach = deployment.sla_breaches.filter(metric=metric, recovered_at__isnull=True).first()
        if misses(value, target) and open_breach is None:
            with transaction.atomic():
                breach = SlaBreach.objects.create(
                    deployment=deployment, metric=metric, target=target, measured=value, at=now
                )
                deployment_event_emit(deployment, "deployment.sla_breach", key=f"breach-{breach.pk}",
                                      **_breach_data(breach))  # fmt: skip
            happened.append(("breach", breach))
        elif not misses(value, target) and open_breach is not None:
            with transaction.atomic():
                open_breach.recovered_at = now
                open_breach.save(update_fields=["recovered_at"])
                deployment_event_emit(deployment, "deployment.recovered", key=f"sla-recovered-{open_breach.pk}",
                                      cause="sla", now_measured=value, **_breach_data(open_breach))  # fmt: skip
            happened.append(("recovered", open_breach))
    return happened


def breach_text(breach: SlaBreach) -> str:
    """A breach as people read it: "TTFT p95 812 ms > 500 ms", "throughput 31.0 tokens/s < 50 tokens/s"."""
    if breach.metric == SlaMetric.TTFT:
        return f"TTFT p95 {breach.measured:.0f} ms > {breach.target:g} ms"
    return f"throughput {breach.measured:.1f} tokens/s < {breach.target:g} tokens/s"


def _breach_data(breach: SlaBreach) -> dict[str, Any]:
    return {
        "metric": breach.metric,
        "target": breach.target,
        "measured": breach.measured,
        "breached_at": breach.at.isoformat(),
        "window_seconds": int(CHECK_WINDOW.total_seconds()),
    }


def sla_monitor_round(*, now: datetime | None = None) -> int:
    """Check every running deployment that has a target; returns how many breaches opened or closed."""
    changes = 0
    targeted = Deployment.objects.filter(status__in=RUNNING_STATUSES).exclude(
        ttft_target_ms__isnull=True, throughput_target_tps__isnull=True
    )
    for deployment in targeted:
        changes += len(sla_check(deployment, now=now))
    return changes


def sla_report(deployment: Deployment, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    seen = measured(deployment, now=now)
    breaches = deployment.sla_breaches.order_by("-at", "-pk")
    return {
        "ttft_target_ms": deployment.ttft_target_ms,
        "throughput_target_tps": deployment.throughput_target_tps,
        "concurrency_limit": deployment.concurrency_limit,
        "breach_count_24h": breaches.filter(at__gte=now - timedelta(hours=24)).count(),
        "last_ttft_ms": seen.ttft_ms,
        "last_throughput_tps": seen.throughput_tps,
        "breaches": [
            {"at": b.at, "metric": b.metric, "target": b.target, "measured": b.measured, "recovered_at": b.recovered_at}
            for b in breaches[:HISTORY_SHOWN]
        ],
    }
