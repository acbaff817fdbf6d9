from __future__ import annotations

from django.db.models import QuerySet, Sum

from accounts.models import Organization
from billing.models import UsageMeter
from deployments.models import Deployment, DeploymentEvent, DeploymentStatus, Instance
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
