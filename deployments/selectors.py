from __future__ import annotations

from accounts.models import Organization
from deployments.models import Deployment, DeploymentStatus
from gpucloud.errors import NotFound


def deployment_get_for_org(org: Organization, deployment_id: str) -> Deployment:
    """The org's deployment, or 404: another tenant's deployment does not exist for this caller."""
    deployment = Deployment.objects.filter(org=org, pk=deployment_id).first()
    if deployment is None:
        raise NotFound(f"No deployment {deployment_id!r}.", param="deployment_id")
    return deployment


RUNNING_STATUSES = (DeploymentStatus.ACTIVE, DeploymentStatus.SCALING, DeploymentStatus.DEGRADED)


def deployments_running_count(org: Organization) -> int:
    return Deployment.objects.filter(org=org, status__in=RUNNING_STATUSES).count()
