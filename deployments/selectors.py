from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TypedDict

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import Organization
from billing.metering import cost_micros, ticking_session
from billing.models import CreditHold, HoldStatus, UsageMeter
from deployments.models import (
    Deployment,
    DeploymentEvent,
    DeploymentKind,
    DeploymentStatus,
    Template,
    Volume,
    VolumeStatus,
)
from deployments.pod_templates import BUILTINS, PodTemplate, pod_template_of
from fleet.models import PRE_LAUNCH_STATES, Instance, InstanceState
from fleet.provisioning import first_minute_hold_key
from gpucloud.core.errors import NotFound

RUNNING_STATUSES = (DeploymentStatus.ACTIVE, DeploymentStatus.SCALING, DeploymentStatus.DEGRADED)
ENDED_STATUSES = (DeploymentStatus.STOPPED, DeploymentStatus.FAILED)


def deployment_get_for_org(org: Organization, deployment_id: str) -> Deployment:
    """The org's deployment, or 404: another tenant's deployment does not exist for this caller (nor
    does a pod: /pods is its API)."""
    deployment = (
        Deployment.objects.filter(org=org, pk=deployment_id)
        .exclude(kind=DeploymentKind.POD)
        .select_related("model", "gpu_type", "region", "preset", "pod")
        .first()
    )
    if deployment is None:
        raise NotFound(f"No deployment {deployment_id!r}.", param="deployment_id")
    return deployment


def pod_get_for_org(org: Organization, pod_id: str) -> Deployment:
    """The org's pod (its Deployment, with the Pod row), or 404."""
    pod = (
        Deployment.objects.filter(org=org, pk=pod_id, kind=DeploymentKind.POD)
        .select_related("pod", "pod__volume", "gpu_type", "region")
        .first()
    )
    if pod is None:
        raise NotFound(f"No pod {pod_id!r}.", param="pod_id")
    return pod


def pods_of(org: Organization, *, include_terminated: bool = False) -> QuerySet[Deployment]:
    pods = (
        Deployment.objects.filter(org=org, kind=DeploymentKind.POD)
        .select_related("pod", "pod__volume", "gpu_type")
        .order_by("-created_at", "pk")
    )
    if include_terminated:
        return pods
    return pods.exclude(pod__terminated=True, status=DeploymentStatus.STOPPED)


def container_get_for_org(org: Organization, service_id: str) -> Deployment:
    """The org's container endpoint (its Deployment, with the Pod row), or 404; a deleted one too."""
    found = containers_of(org).filter(pk=service_id).first()
    if found is None:
        raise NotFound(f"No inference service {service_id!r}.", param="service_id")
    return found


def containers_of(org: Organization) -> QuerySet[Deployment]:
    """The org's container endpoints, newest first; deleted ones are gone."""
    return (
        Deployment.objects.filter(org=org, kind=DeploymentKind.CONTAINER, pod__terminated=False)
        .select_related("pod", "gpu_type", "created_by")
        .order_by("-created_at", "pk")
    )


def volume_get_for_org(org: Organization, volume_id: str) -> Volume:
    """The org's volume, or 404: another tenant's volume does not exist for this caller."""
    volume = Volume.objects.filter(org=org, pk=volume_id).select_related("region").first()
    if volume is None:
        raise NotFound(f"No volume {volume_id!r}.", param="volume_id")
    return volume


def volumes_of(org: Organization, *, include_deleted: bool = False) -> QuerySet[Volume]:
    volumes = Volume.objects.filter(org=org).select_related("region").order_by("-created_at", "pk")
    return volumes if include_deleted else volumes.exclude(status=VolumeStatus.DELETED)


def template_get_for_org(org: Organization, template_id: str, *, param: str = "template_id") -> PodTemplate:
    """A built-in template, or the org's own, or 404: another tenant's template does not exist for
    this caller."""
    if template_id in BUILTINS:
        return BUILTINS[template_id]
    row = Template.objects.filter(org=org, pk=template_id).first()
    if row is None:
        raise NotFound(f"No template {template_id!r}; see GET /api/v1/templates.", param=param)
    return pod_template_of(row)


def templates_of(org: Organization) -> list[PodTemplate]:
    """The built-ins, then the org's own, newest first."""
    rows = Template.objects.filter(org=org).order_by("-created_at", "pk")
    return [*BUILTINS.values(), *(pod_template_of(row) for row in rows)]


@dataclass(frozen=True)
class VolumeRow:
    """One volume as the volumes page lists it: what it has been billed and the pods on it."""

    volume: Volume
    billed_micros: int
    pods: list[Deployment]  # not terminated, newest first


def volume_rows(org: Organization) -> list[VolumeRow]:
    """The org's volumes (deleted ones left out) with their billing and pods, in three queries."""
    volumes = list(volumes_of(org))
    sessions = {f"{v.pk}:{n}": v.pk for v in volumes for n in range(v.meter_sessions + 1)}
    billed: dict[str, int] = {}
    for key, micros in UsageMeter.objects.filter(meter_key__in=list(sessions)).values_list(
        "meter_key", "billed_micros"
    ):
        billed[sessions[key]] = billed.get(sessions[key], 0) + micros
    on: dict[str, list[Deployment]] = {}
    pods = Deployment.objects.filter(pod__volume__in=volumes, pod__terminated=False).select_related("pod")
    for pod in pods.order_by("-created_at", "pk"):
        on.setdefault(pod.pod.volume_id or "", []).append(pod)
    return [VolumeRow(v, billed.get(v.pk, 0), on.get(v.pk, [])) for v in volumes]


def deployments_of(org: Organization) -> QuerySet[Deployment]:
    # The catalog model's long text and engine arguments are never shown with a deployment; a pod's
    # row comes along (its image and status words are shown beside model deployments).
    return (
        Deployment.objects.filter(org=org)
        .select_related("model", "gpu_type", "region", "pod")
        .defer("model__description", "model__engine_args")
        .order_by("-created_at")
    )


def deployments_count(org: Organization, *, active_only: bool = False, kind: str | None = None) -> int:
    queryset = Deployment.objects.filter(org=org, **({"kind": kind} if kind else {}))
    return (queryset.exclude(status__in=ENDED_STATUSES) if active_only else queryset).count()


def deployments_running_count(org: Organization) -> int:
    return Deployment.objects.filter(org=org, status__in=RUNNING_STATUSES).count()


def instances_of(deployment: Deployment) -> QuerySet[Instance]:
    return deployment.instances.order_by("created_at")


EVENTS_SHOWN = 50


def deployment_timeline(deployment: Deployment) -> dict[str, object]:
    """What the page's replicas and events partial shows: every replica, the latest events first."""
    return {
        "deployment": deployment,
        "instances": sorted(deployment.instances.all(), key=lambda i: i.created_at),  # prefetched on the page
        "events": list(deployment.events.order_by("-at", "-pk")[:EVENTS_SHOWN]),
    }


def events_of(deployment: Deployment) -> QuerySet[DeploymentEvent]:
    return deployment.events.order_by("at", "pk")


def total_cost_micros(deployment: Deployment) -> int:
    """What the deployment's instances have been charged so far (their meters are keyed by instance id)."""
    ids = [i.pk for i in deployment.instances.all()]  # prefetched on the page
    return UsageMeter.objects.filter(meter_key__in=ids).aggregate(total=Sum("billed_micros"))["total"] or 0


class Ticker(TypedDict):
    """A running cost as pages tick it (static/js/live.js): the accrued cost at `as_of_ms`, what
    bills per hour now, and the sessions it rises by (`ticking_session`: each only once past the
    minute its launch billed)."""

    cost_micros: int
    rate_micros: int
    as_of_ms: int
    sessions: list[list[int]]


@dataclass(frozen=True)
class DeploymentRow:
    """One deployment as the pages list it: what runs now and what it has cost."""

    deployment: Deployment
    ready: int
    live: int
    total_cost_micros: int  # billed so far
    accrued_micros: int  # cost up to `as_of`, as metering will bill it
    as_of: datetime
    # What bills now: the launched replicas not yet confirmed ended, each at its own price (they
    # differ during a preset rollout). $0 while a replica waits for capacity or scales from zero.
    hourly_cost_micros: int
    runtime_seconds: int = 0  # time with at least one replica billed, to `as_of` (it stops when nothing runs)
    sessions: tuple[tuple[int, datetime], ...] = ()  # the billed replicas' prices and launches

    @cached_property  # the templates read it four times a row
    def ticker(self) -> Ticker:
        return {"cost_micros": self.accrued_micros, "rate_micros": self.hourly_cost_micros,
                "as_of_ms": int(self.as_of.timestamp() * 1000),
                "sessions": [ticking_session(price, launched) for price, launched in self.sessions]}  # fmt: skip


def deployment_rows(
    org: Organization,
    *,
    active_only: bool = False,
    ended_since: datetime | None = None,
    offset: int = 0,
    limit: int | None = None,
    kind: str | None = None,
) -> list[DeploymentRow]:
    """The org's deployments, newest first (only those not stopped or failed with `active_only`,
    and with `ended_since` also those that ended since then; `limit` of them from `offset`), with
    replica counts and cost so far, in three queries whatever their number (deployments, their
    instances, their meters); only those of `kind` when given."""
    queryset = deployments_of(org).filter(**({"kind": kind} if kind else {}))
    if active_only:
        recently_ended = Q(stopped_at__gte=ended_since) if ended_since else Q(pk__in=[])
        queryset = queryset.filter(~Q(status__in=ENDED_STATUSES) | recently_ended)
    if limit is not None:
        queryset = queryset[offset : offset + limit]
    deployments = list(queryset.prefetch_related("instances"))
    by_instance = {i.pk: d.pk for d in deployments for i in d.instances.all()}
    costs: dict[str, int] = {}
    for meter_key, billed in UsageMeter.objects.filter(meter_key__in=list(by_instance)).values_list(
        "meter_key", "billed_micros"
    ):
        costs[by_instance[meter_key]] = costs.get(by_instance[meter_key], 0) + billed
    now = timezone.now()
    return [_row(d, costs.get(d.pk, 0), now) for d in deployments]


def _row(deployment: Deployment, cost: int, now: datetime) -> DeploymentRow:
    instances = list(deployment.instances.all())
    states = [i.state for i in instances]
    running = [i for i in instances if i.state not in (InstanceState.TERMINATED, InstanceState.FAILED)]
    billed = [i for i in running if i.launched_at is not None and i.terminated_at is None]
    return DeploymentRow(
        deployment, ready=states.count(InstanceState.READY), live=len(running), total_cost_micros=cost,
        accrued_micros=_accrued(instances, now), as_of=now,
        hourly_cost_micros=sum(i.hourly_price_micros for i in billed), runtime_seconds=_runtime(instances, now),
        sessions=tuple((i.hourly_price_micros, i.launched_at) for i in billed if i.launched_at is not None),
    )  # fmt: skip


def _runtime(instances: list[Instance], now: datetime) -> int:
    """Seconds during which at least one replica was billed (launched, not yet confirmed ended):
    the union of the replicas' sessions, so two replicas at once count once and a deployment
    scaled to zero stops counting."""
    sessions = sorted((i.launched_at, i.terminated_at or now) for i in instances if i.launched_at is not None)
    total, covered_to = 0.0, None
    for start, end in sessions:
        if covered_to is not None and start < covered_to:
            start = covered_to
        if end > start:
            total += (end - start).total_seconds()
            covered_to = end
    return int(total)


def first_minute_held_micros(deployment: Deployment) -> int:
    """Credit held for replicas not launched yet (their first minute, charged at launch or
    released if they never start): a hold, not a cost."""
    pending = [i for i in deployment.instances.all() if i.launched_at is None and i.state in PRE_LAUNCH_STATES]
    keys = [first_minute_hold_key(i.pk) for i in pending]
    if not keys:
        return 0
    held = CreditHold.objects.filter(idempotency_key__in=keys, status=HoldStatus.OPEN)
    return held.aggregate(total=Sum("amount_micros"))["total"] or 0


def deployment_row(deployment: Deployment, *, now: datetime | None = None) -> DeploymentRow:
    return _row(deployment, total_cost_micros(deployment), now or timezone.now())


def _accrued(instances: list[Instance], now: datetime) -> int:
    """What the replicas have cost up to `now`, as metering will bill it: each launched
    instance's running time (60-second minimum) at its price, to its end or to now."""
    total = 0
    for instance in instances:
        if instance.launched_at is not None:
            end = instance.terminated_at or now
            total += cost_micros(instance.hourly_price_micros, int((end - instance.launched_at).total_seconds()))
    return total
