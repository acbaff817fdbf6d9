"""A Kubernetes API emulator on loopback for the kubernetes driver's tests.

kmock's KubernetesEmulator is an aiohttp app that stores what is created, patched and deleted and
serves it back (no controllers, no scheduler, no label selectors). It runs here on an event loop
in a background thread, so the synchronous kubernetes client (the driver's, and the test's own
for setting up nodes and pods) talks to it over real HTTP.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import kmock
from kubernetes import client

T = TypeVar("T")
START_TIMEOUT_SECONDS = 10.0
TIMEOUT = 5.0
MERGE_PATCH = "application/merge-patch+json"
# What the driver uses: an emulator answers 404 for listing a resource it has never heard of.
RESOURCES = {
    "v1/nodes": kmock.ResourceInfo(kind="Node", namespaced=False),
    "v1/pods": kmock.ResourceInfo(kind="Pod", namespaced=True, subresources={"status", "log"}),
    "v1/services": kmock.ResourceInfo(kind="Service", namespaced=True),
    "v1/secrets": kmock.ResourceInfo(kind="Secret", namespaced=True),
    "apps/v1/deployments": kmock.ResourceInfo(kind="Deployment", namespaced=True),
}


class EmulatedCluster:
    """Start with `start()`, stop with `stop()`; `url` is the API server, `core`/`apps` a client."""

    def __init__(self) -> None:
        self.handler = kmock.KubernetesEmulator()
        for resource, info in RESOURCES.items():
            self.handler.resources[resource] = info
        self._server = kmock.Server(self.handler)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="k8s-emulator", daemon=True)
        self.url = ""
        self._api_client: client.ApiClient | None = None

    def start(self) -> None:
        self._thread.start()
        self._run(self._enter())
        self.url = str(self._server.url).rstrip("/")
        self._api_client = client.ApiClient(client.Configuration(host=self.url))

    def stop(self) -> None:
        if self._api_client is not None:
            self._api_client.close()
        try:
            self._run(self._exit())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_SECONDS)
            self._loop.close()

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self._api_client)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self._api_client)

    def requests(self, method: str) -> list[kmock.Request]:
        """The requests served so far with that HTTP method, oldest first."""
        return [request for request in self.handler if request.method == method]

    async def _enter(self) -> None:
        await self.handler.__aenter__()
        await self._server.__aenter__()

    async def _exit(self) -> None:
        await self._server.__aexit__(None, None, None)
        await self.handler.__aexit__(None, None, None)

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(START_TIMEOUT_SECONDS)


def add_node(
    cluster: EmulatedCluster,
    name: str,
    *,
    labels: dict[str, str],
    allocatable: dict[str, str],
    unschedulable: bool = False,
) -> None:
    node = client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1NodeSpec(unschedulable=unschedulable),
        status=client.V1NodeStatus(
            allocatable=allocatable,
            conditions=[client.V1NodeCondition(type="Ready", status="True")],
        ),
    )
    cluster.core.create_node(node, _request_timeout=TIMEOUT)


def add_pod(
    cluster: EmulatedCluster,
    name: str,
    *,
    namespace: str,
    labels: dict[str, str],
    node: str | None = None,
    limits: dict[str, str] | None = None,
    phase: str = "Pending",
) -> None:
    container = client.V1Container(
        name="engine", image="example/engine:1", resources=client.V1ResourceRequirements(limits=limits)
    )
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=client.V1PodSpec(node_name=node, containers=[container]),
        status=client.V1PodStatus(phase=phase),
    )
    cluster.core.create_namespaced_pod(namespace, pod, _request_timeout=TIMEOUT)


def set_pod_status(cluster: EmulatedCluster, name: str, *, namespace: str, status: dict[str, Any]) -> None:
    """Merge `status` into the pod's status, as a kubelet would report it."""
    cluster.core.patch_namespaced_pod_status(
        name, namespace, {"status": status}, _content_type=MERGE_PATCH, _request_timeout=TIMEOUT
    )
