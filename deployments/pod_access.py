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


def pod_ssh_endpoint(deployment: Deployment) -> SshEndpoint | None:
    """Where to SSH into the running pod (it exposes 22/tcp, has keys, and its provider says where), else None."""
    if "22/tcp" not in deployment.pod.ports:
        return None
    if not deployment.pod.ssh_public_keys and not ssh_keys_of(deployment.org).exists():
        return None  # no key lets anyone in (the local image's server stays off without one)
    found = _endpoints(deployment)
    return found.ssh if found else None


def pod_direct_urls(deployment: Deployment) -> dict[int, str]:
    """Each HTTP port's address at its provider, where it has one of its own (RunPod's proxy, a public IP
    and port): the platform's proxy is the way in that works everywhere; this one skips it."""
    found = _endpoints(deployment)
    return found.direct if found else {}


@dataclass(frozen=True)
class _Endpoints:
    ssh: SshEndpoint | None
    direct: dict[int, str]


ENDPOINTS_CACHE_SECONDS = 300  # a machine's addresses do not move: a provider is asked once per machine and 5 min


def _endpoints(deployment: Deployment) -> _Endpoints | None:
    """The running machine's addresses, asked of its provider once and cached (a cloud call per page
    view would make every GET of a pod as slow as the cloud); None while it does not run."""
    machine = deployment.instances.filter(state=InstanceState.READY).order_by("-created_at").first()
    if machine is None:
        return None
    key = f"pod-endpoints:{machine.pk}"
    cached = cache.get(key)
    if cached is not None:
        return cast(_Endpoints, cached)
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
    for port in (int(p.split("/")[0]) for p in deployment.pod.ports if p.endswith("/http")):
        try:
            direct[port] = driver.port_url(machine.provider_instance_id, port)
        except ProviderError:
            complete = False
    found = _Endpoints(ssh=ssh, direct=direct)
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
