"""Writes of deployments. The fleet issue adds provisioning; billing needs the stop below."""

from __future__ import annotations

from accounts.models import Organization
from deployments.models import Deployment, DeploymentKind, DeploymentStatus
from deployments.selectors import RUNNING_STATUSES


def deployments_stop_for_nonpayment(*, org: Organization) -> int:
    """Ask every running workload of the org to stop. Pods stop with their storage kept
    (they can be started again); other deployments go to `stopping` for the reconciler."""
    running = Deployment.objects.filter(org=org, status__in=RUNNING_STATUSES)
    pods = running.filter(kind=DeploymentKind.POD).update(status=DeploymentStatus.STOPPED)
    others = running.exclude(kind=DeploymentKind.POD).update(status=DeploymentStatus.STOPPING)
    return pods + others
