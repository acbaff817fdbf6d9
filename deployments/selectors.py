from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet, Sum

from accounts.models import Organization
from billing.metering import cost_micros
from billing.models import UsageMeter
from deployments.models import Deployment, DeploymentEvent, DeploymentStatus, Instance, InstanceState
from gpucloud.errors import NotFound

RUNNING_STATUSES = (DeploymentStatus.ACTIVE, DeploymentStatus.SCALING, DeploymentStatus.DEGRADED)


def deployment_get_for_org(org: Organization, deployment_id: str) -> Deployment:
    """The org's deployment, or 404: another tenant's deployment does not exist for this caller."""
    deployment = (
        Deployment.objects.filter(org=org, pk=deployment_id).select_related("model", "gpu_type", "region").first()
    )
    if deployment is None:
        raise NotFound(f"No deployment {deployment_id!r}.", param="deployment_id")
    return deployment


def deployments_of(org: Organization) -> QuerySet[Deployment]:
    return Deployment.objects.filter(org=org).select_related("model", "gpu_type", "region").order_by("-created_at")


def deployments_running_count(org: Organization) -> int:
    return Deployment.objects.filter(org=org, status__in=RUNNING_STATUSES).count()


def instances_of(deployment: Deployment) -> QuerySet[Instance]:
    return deployment.instances.order_by("created_at")


def events_of(deployment: Deployment) -> QuerySet[DeploymentEvent]:
    return deployment.events.order_by("at", "pk")


def total_cost_micros(deployment: Deployment) -> int:
    """What the deployment's instances have been charged so far (their meters are keyed by instance id)."""
    ids = list(deployment.instances.values_list("pk", flat=True))
    return UsageMeter.objects.filter(meter_key__in=ids).aggregate(total=Sum("billed_micros"))["total"] or 0


@dataclass(frozen=True)
class DeploymentRow:
    """One deployment as the pages list it: what runs now and what it has cost."""

    deployment: Deployment
    ready: int
    live: int
    total_cost_micros: int

    @property
    def hourly_cost_micros(self) -> int:
        return self.deployment.hourly_price_micros * self.live


def deployment_rows(org: Organization) -> list[DeploymentRow]:
    """The org's deployments with replica counts and cost so far, in three queries whatever
    their number (deployments, their instances, their meters)."""
    deployments = list(deployments_of(org).prefetch_related("instances"))
    by_instance = {i.pk: d.pk for d in deployments for i in d.instances.all()}
    costs: dict[str, int] = {}
    for meter_key, billed in UsageMeter.objects.filter(meter_key__in=list(by_instance)).values_list(
        "meter_key", "billed_micros"
    ):
        costs[by_instance[meter_key]] = costs.get(by_instance[meter_key], 0) + billed
    return [_row(d, costs.get(d.pk, 0)) for d in deployments]


def _row(deployment: Deployment, cost: int) -> DeploymentRow:
    states = [i.state for i in deployment.instances.all()]
    live = sum(s not in (InstanceState.TERMINATED, InstanceState.FAILED) for s in states)
    return DeploymentRow(deployment, ready=states.count(InstanceState.READY), live=live, total_cost_micros=cost)


def deployment_row(deployment: Deployment) -> DeploymentRow:
    return _row(deployment, total_cost_micros(deployment))


def accrued_cost_micros(deployment: Deployment, *, now: datetime) -> int:
    """What the deployment's replicas have cost up to `now`, as metering will bill it: each
    launched instance's running time (60-second minimum) at its price, to its end or to now.
    The pages tick on from this figure at the current hourly rate."""
    total = 0
    for instance in deployment.instances.exclude(launched_at=None):
        assert instance.launched_at is not None
        end = instance.terminated_at or now
        total += cost_micros(instance.hourly_price_micros, int((end - instance.launched_at).total_seconds()))
    return total


def deployment_ticker(deployment: Deployment, *, now: datetime) -> dict[str, int]:
    """The running cost as pages tick it: the accrued cost at `now`, the current hourly rate of
    its live replicas, and `now` in milliseconds (the clock the page counts from)."""
    return {
        "cost_micros": accrued_cost_micros(deployment, now=now),
        "rate_micros": deployment_row(deployment).hourly_cost_micros,
        "as_of_ms": int(now.timestamp() * 1000),
    }
