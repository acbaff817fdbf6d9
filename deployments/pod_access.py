"""Who may reach a pod's ports through the platform's proxy, and where they are (the gateway's
gateway/pod_proxy.py asks; one query and, for a running pod, the driver's address of the port)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import cast

from django.core.cache import cache

from accounts.auth import principal_from_session_key
from accounts.models import Membership
from accounts.roles import CAN_WRITE, role_at_least
from accounts.selectors import ssh_keys_of
from deployments.models import Deployment, DeploymentKind, Pod
from fleet import drivers
from fleet.models import InstanceState
from fleet.providers.base import ProviderError


@dataclass(frozen=True)
class PortTarget:
    url: str  # the port's base URL at its provider
    org_id: str


@dataclass(frozen=True)
class PortRefusal:
    status: int
    message: str


def pod_port_target(pod_id: str, port: int, *, session_key: str, token: str) -> PortTarget | PortRefusal:
    """Where `port` of the pod is, for a caller with the pod's proxy token or a signed-in session of a
    member (member role or above: a pod's ports are a shell on it) of the pod's org; else why not.
    Another org's pod and no pod answer alike (404)."""
    deployment = Deployment.objects.filter(pk=pod_id, kind=DeploymentKind.POD).select_related("pod").first()
    if not session_key and not token:
        return PortRefusal(401, "Sign in, or pass the pod's proxy token (?gpucloud_token=...), to reach its ports.")
    if deployment is None or not _may_enter(deployment, session_key=session_key, token=token):
        return PortRefusal(404, f"No pod {pod_id!r}.")
    pod = deployment.pod
    if f"{port}/http" not in pod.ports:
        return PortRefusal(
            404, f"Pod {pod_id} exposes no HTTP port {port} (it exposes {', '.join(pod.ports) or 'none'})."
        )
    machine = deployment.instances.filter(state=InstanceState.READY).order_by("-created_at").first()
    if machine is None:
        return PortRefusal(503, f"The pod is {pod.status}: its ports answer while it runs.")
    try:
        url = drivers.driver(machine.provider).port_url(machine.provider_instance_id, port)
    except ProviderError as exc:
        return PortRefusal(502, f"The pod's provider does not say where port {port} is: {exc.message}")
    return PortTarget(url=url, org_id=deployment.org_id)


@dataclass(frozen=True)
class SshEndpoint:
    host: str
    port: int
    user: str

    @property
    def command(self) -> str:
        return f"ssh -p {self.port} {self.user}@{self.host}"


@dataclass(frozen=True)
class PodAddresses:
    """Where the running pod is reached past the platform's proxy: SSH (it exposes 22/tcp, some key
    lets someone in, and its provider says where) and each HTTP port's own address at its provider
    (RunPod's proxy, a public IP and port): the platform's proxy is the way in that works everywhere."""

    ssh: SshEndpoint | None
    direct: dict[int, str]


NOWHERE = PodAddresses(ssh=None, direct={})
ENDPOINTS_CACHE_SECONDS = 300  # a machine's addresses do not move: a provider is asked once per machine and 5 min


def pod_addresses(deployment: Deployment) -> PodAddresses:
    found = _endpoints(deployment) or NOWHERE
    if found.ssh is not None and not deployment.pod.ssh_public_keys and not ssh_keys_of(deployment.org).exists():
        return PodAddresses(ssh=None, direct=found.direct)  # no key lets anyone in (the local image's server is off)
    return found


def _endpoints(deployment: Deployment) -> PodAddresses | None:
    """The running machine's addresses, asked of its provider once and cached (a cloud call per page
    view would make every GET of a pod as slow as the cloud); None while it does not run."""
    machine = deployment.instances.filter(state=InstanceState.READY).order_by("-created_at").first()
    if machine is None:
        return None
    key = f"pod-endpoints:{machine.pk}"
    cached = cache.get(key)
    if cached is not None:
        return cast(PodAddresses, cached)
    driver = drivers.driver(machine.provider)
    complete = True
    ssh = None
    if "22/tcp" in deployment.pod.ports:
        try:
            host, port = driver.tcp_endpoint(machine.provider_instance_id, 22)
            ssh = SshEndpoint(host=host, port=port, user=driver.ssh_user)
        except ProviderError:
            complete = False
    direct = {}
    for port in deployment.pod.port_numbers("http"):
        try:
            direct[port] = driver.port_url(machine.provider_instance_id, port)
        except ProviderError:
            complete = False
    found = PodAddresses(ssh=ssh, direct=direct)
    if complete:  # a provider that does not know yet is asked again next time
        cache.set(key, found, ENDPOINTS_CACHE_SECONDS)
    return found


def _may_enter(deployment: Deployment, *, session_key: str, token: str) -> bool:
    pod: Pod = deployment.pod
    if token and pod.proxy_token and hmac.compare_digest(token.encode(), pod.proxy_token.encode()):
        return True
    if not session_key:
        return False
    principal = principal_from_session_key(session_key)
    if principal is None or principal.user is None:
        return False
    role = (
        Membership.objects.filter(org_id=deployment.org_id, user=principal.user).values_list("role", flat=True).first()
    )
    return role is not None and role_at_least(role, CAN_WRITE)
