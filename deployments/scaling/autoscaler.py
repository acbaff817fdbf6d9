"""The autoscaler's round (beat, every GPUCLOUD_AUTOSCALE_SECONDS, 30 by default): for each running
deployment, read its load and idle time from the gateway's counters, ask `policy.decide`, and
apply the answer through the services (new replicas are billed from launch, removed ones stop
billing when their termination is confirmed). The streaks between rounds live in the cache: losing
them only delays a change by a few checks, and any process may run the round.

Load is the requests in flight at the gateway (the `concurrency` metric) or the requests waiting
for a generation slot in the replicas' engines (`queue_depth`, read from their /metrics); when no
replica reports its queue, only the bounds and scale-to-zero apply that round. Idle time always
counts from the gateway: a deployment with requests in flight is not idle.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from django.core.cache import cache
from django.db.models import Max

from deployments import services, traffic
from deployments.models import Deployment, RequestMinute, RolloutState, ScalingMetric, SlaBreach
from deployments.scaling.policy import Decision, Policy, Streaks, decide
from deployments.selectors import RUNNING_STATUSES
from deployments.sla import breach_text
from fleet.engines import queue_depths
from gpucloud.core.errors import ApiError

logger = logging.getLogger(__name__)
STREAKS_SECONDS = 600


def autoscale_round(*, now: float | None = None) -> dict[str, int]:
    """Returns the deployments whose replica count changed, with the new count."""
    now = now if now is not None else time.time()
    in_flight = traffic.store().in_flight()
    # A preset rollout owns the replica count until it ends (deployments/preset_rollout.py).
    running = Deployment.objects.filter(status__in=RUNNING_STATUSES)
    deployments = list(running.exclude(rollout_state=RolloutState.ROLLING))
    last_requests = _last_requests([d.pk for d in deployments])
    queues = queue_depths([d for d in deployments if d.scaling_metric == ScalingMetric.QUEUE_DEPTH])
    missed = _sla_missed([d.pk for d in deployments])
    changed: dict[str, int] = {}
    for deployment in deployments:
        flying = in_flight.get(deployment.pk, 0)
        idle = _idle_seconds(deployment, last_requests.get(deployment.pk), now) if flying == 0 else 0.0
        load = flying if deployment.scaling_metric == ScalingMetric.CONCURRENCY else queues.get(deployment.pk)
        decision = _decide(deployment, load, idle, missed.get(deployment.pk, ""))
        if decision.changed and _apply(deployment, decision):
            changed[deployment.pk] = decision.replicas
    return changed


def _decide(deployment: Deployment, load: float | None, idle_seconds: float | None, sla_missed: str) -> Decision:
    """`load` None: not measured this round (no replica reported its queue)."""
    policy = Policy(
        min_replicas=deployment.min_replicas, max_replicas=deployment.max_replicas,
        scale_to_zero=deployment.scale_to_zero, idle_timeout_seconds=deployment.idle_timeout_seconds,
        target=deployment.scaling_target, follow_load=load is not None,
    )  # fmt: skip
    key = f"autoscale:streaks:{deployment.pk}"
    remembered = cache.get(key) or (0, 0)
    decision = decide(
        policy, Streaks(*remembered), replicas=deployment.desired_replicas, load=load or 0,
        idle_seconds=idle_seconds, sla_missed=sla_missed,
    )  # fmt: skip
    cache.set(key, (decision.streaks.above, decision.streaks.below), STREAKS_SECONDS)
    return decision


def _sla_missed(deployment_ids: list[str]) -> dict[str, str]:
    """The SLA target each deployment misses now (its open breach, as the monitor measured it)."""
    missed: dict[str, str] = {}
    for breach in SlaBreach.objects.filter(deployment_id__in=deployment_ids, recovered_at__isnull=True).order_by("at"):
        missed.setdefault(breach.deployment_id, breach_text(breach))
    return missed


def _last_requests(deployment_ids: list[str]) -> dict[str, float]:
    """When each deployment last served a request (the end of that minute, epoch seconds): the
    stored minutes in one query, the counter store's newer ones in one read."""
    last: dict[str, float] = {}
    stored = (
        RequestMinute.objects.filter(deployment_id__in=deployment_ids, requests__gt=0)
        .values("deployment_id")
        .annotate(latest=Max("minute"))
    )
    for row in stored:
        last[row["deployment_id"]] = row["latest"].timestamp() + 60
    wanted = set(deployment_ids)
    for (deployment_id, minute), fields in traffic.store().minutes().items():
        if deployment_id in wanted and fields.get("requests"):
            last[deployment_id] = max(last.get(deployment_id, 0.0), minute + 60)
    return last


def _idle_seconds(deployment: Deployment, last_request: float | None, now: float) -> float:
    """Seconds since its last request (minute resolution), or since it started when it served none."""
    if last_request is None:
        started = deployment.started_at or deployment.created_at
        return max(0.0, now - started.timestamp())
    return max(0.0, now - last_request)


def _apply(deployment: Deployment, decision: Decision) -> bool:
    try:
        if decision.replicas == 0:
            services.deployment_scale_to_zero(deployment_id=deployment.pk, reason=decision.reason)
        else:
            services.deployment_scale(deployment_id=deployment.pk, replicas=decision.replicas, reason=decision.reason)
    except ApiError as exc:  # e.g. the org cannot pay for another replica: stay as it is, try next round
        logger.warning("autoscaling %s to %d refused: %s", deployment.pk, decision.replicas, exc.message)
        return False
    logger.info("autoscaled %s to %d at %s: %s", deployment.pk, decision.replicas,
                datetime.now(UTC).isoformat(timespec="seconds"), decision.reason)  # fmt: skip
    return True
