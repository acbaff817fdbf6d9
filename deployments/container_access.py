"""Where a container endpoint's requests go (the gateway's gateway/service_proxy.py asks, for an
API key's org): the address of its one HTTP port on each ready instance, or why not."""

from __future__ import annotations

from dataclasses import dataclass

from deployments.models import Deployment, DeploymentKind
from deployments.pod_access import PortRefusal
from fleet import drivers
from fleet.models import InstanceState
from fleet.providers.base import ProviderError


@dataclass(frozen=True)
class ServiceTargets:
    urls: tuple[str, ...]  # its port's base URL on each ready instance, at its provider


def service_targets(service_id: str, org_id: str) -> ServiceTargets | PortRefusal:
    """Its ready instances' addresses; 404 for another org's service, a deleted one, or none at all
    (alike); 503 while no instance is ready; 502 when no provider says where one is."""
    deployment = (
        Deployment.objects.filter(pk=service_id, org_id=org_id, kind=DeploymentKind.CONTAINER, pod__terminated=False)
        .select_related("pod")
        .first()
    )
    if deployment is None:
        return PortRefusal(404, f"No inference service {service_id!r}.")
    port = deployment.pod.port_numbers("http")[0]
    machines = deployment.instances.filter(state=InstanceState.READY).order_by("created_at", "pk")
    if not machines:
        return PortRefusal(503, f"The service is {deployment.status}: it answers while an instance is ready.")
    urls, why = [], ""
    for machine in machines:
        try:
            urls.append(drivers.driver(machine.provider).port_url(machine.provider_instance_id, port))
        except ProviderError as exc:
            why = exc.message
    if not urls:
        return PortRefusal(502, f"The service's provider does not say where its port is: {why}")
    return ServiceTargets(urls=tuple(urls))
