"""A Kubernetes API emulator on loopback for the kubernetes driver's tests.

kmock's KubernetesEmulator is an aiohttp app that stores what is created, patched and deleted and
serves it back (no controllers, no scheduler, no label selectors). It runs here on an event loop
in a background thread, so the synchronous kubernetes client (the driver's, and the test's own
for setting up nodes and pods) talks to it over real HTTP.

`Cluster`, the handler, adds what an API server does and the driver relies on:
- every object created is checked against the strict Kubernetes schema (k8s_schema), and an invalid
  one is refused with 422 Invalid, as the API server's validation would;
- a NodePort or LoadBalancer Service gets a node port (30000-32767) for each port that names none;
- lists honour `limit` and `continue` (pages; a token it did not issue is 410 Expired);
- a PersistentVolumeClaim grows only where its StorageClass (or the default class) allows volume
  expansion (else 403 Forbidden, the admission plugin's words) and never shrinks (422 Invalid);
- with `kubelet=True`, a controller and kubelet stand-in: a Deployment gets its pod at once, Running
  on a node its affinity allows (Pending, unschedulable, while a claim it mounts does not exist), and
  the pod goes with it.
Label selectors stay ignored (the driver re-applies them: the tests prove that too).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import threading
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp.web
import kmock
import kubernetes_validate  # type: ignore[import-untyped]
from kubernetes import client

from tests.support.k8s_schema import schema_check

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
    "v1/persistentvolumeclaims": kmock.ResourceInfo(kind="PersistentVolumeClaim", namespaced=True),
    "storage.k8s.io/v1/storageclasses": kmock.ResourceInfo(kind="StorageClass", namespaced=False),
}
PODS = kmock.resource("", "v1", "pods")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
SERVICES = kmock.resource("", "v1", "services")
CLAIMS = kmock.resource("", "v1", "persistentvolumeclaims")
CLASSES = kmock.resource("storage.k8s.io", "v1", "storageclasses")
FIRST_NODE_PORT = 30000
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


class Cluster(kmock.KubernetesEmulator):
    """kmock's emulator with the API server's validation, node ports, pages and claim resizing, and
    (`kubelet`) pods for Deployments."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.kubelet = False
        self._node_ports = itertools.count(FIRST_NODE_PORT)
        self._pod_ids = itertools.count(1)

    async def _handle(self, request: Any) -> aiohttp.web.StreamResponse:
        try:
            self._admit(request)
        except kmock.KubernetesError as exc:
            return await self._render_error(exc)
        response = await super()._handle(request)
        if request.action == kmock.action.CREATE and request.resource == SERVICES and response.status < 300:
            self._allocate_node_ports(request.data)
        if self.kubelet and request.resource == DEPLOYMENTS and response.status < 300:
            self._reconcile_pods()
        return response

    def _admit(self, request: Any) -> None:
        """What the API server checks before it stores anything."""
        if request.action == kmock.action.CREATE and isinstance(request.data, dict):
            _validate(request.data, request.resource)
        if request.action == kmock.action.UPDATE and request.resource == CLAIMS and request.name:
            self._check_resize(request)

    def _allocate_node_ports(self, service: dict[str, Any]) -> None:
        """Into the stored Service (the request as sent stays as it was, for the tests to compare)."""
        spec = service.get("spec", {})
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            ports = [{"nodePort": next(self._node_ports), **port} for port in spec.get("ports", [])]
            key = (SERVICES, service["metadata"].get("namespace"), service["metadata"]["name"])
            self.objects[key].patch({"spec": {"ports": ports}})

    def _check_resize(self, request: Any) -> None:
        claim = self._object(CLAIMS, request.namespace, request.name)
        asked = ((request.data or {}).get("spec", {}).get("resources", {}).get("requests", {})).get("storage")
        if claim is None or asked is None:
            return
        now = claim["spec"]["resources"]["requests"]["storage"]
        if _gib(asked) < _gib(now):
            raise kmock.KubernetesError(
                status=422, reason="Invalid",
                message=f'PersistentVolumeClaim "{request.name}" is invalid: spec.resources.requests.storage: '
                "Forbidden: field can not be less than previous value",
            )  # fmt: skip
        if _gib(asked) > _gib(now) and not self._expandable(claim["spec"].get("storageClassName")):
            raise kmock.KubernetesError(
                status=403, reason="Forbidden",
                message=f'persistentvolumeclaims "{request.name}" is forbidden: only dynamically provisioned pvc '
                "can be resized and the storageclass that provisions the pvc must support resize",
            )  # fmt: skip

    def _expandable(self, class_name: str | None) -> bool:
        classes = [obj for (resource, _, _), obj in self.objects.items() if resource == CLASSES and not obj.deleted]
        for storage_class in classes:
            meta = storage_class.raw.get("metadata", {})
            named = meta.get("name") == class_name if class_name else meta.get("annotations", {}).get(DEFAULT_CLASS)
            if named:
                return bool(storage_class.raw.get("allowVolumeExpansion"))
        return False

    def _reconcile_pods(self) -> None:
        """Each live Deployment has one pod; a pod whose Deployment went goes too."""
        live = {key: obj.raw for key, obj in self.objects.items() if not obj.deleted}
        deployments = {(ns, name): raw for (res, ns, name), raw in live.items() if res == DEPLOYMENTS}
        for (res, ns, name), raw in live.items():
            owner = raw.get("metadata", {}).get("annotations", {}).get("emulator/deployment")
            if res == PODS and owner and (ns, owner) not in deployments:
                self.objects[(res, ns, name)].delete()
        owned = {(ns, raw["metadata"]["annotations"].get("emulator/deployment")) for (res, ns, _), raw in live.items()
                 if res == PODS and raw.get("metadata", {}).get("annotations")}  # fmt: skip
        for (ns, name), deployment in deployments.items():
            if (ns, name) not in owned:
                pod = self._pod_for(str(ns), name, deployment, live)
                self.objects[(PODS, ns, pod["metadata"]["name"])] = pod

    def _pod_for(self, namespace: str, name: str, deployment: dict[str, Any], live: dict[Any, Any]) -> dict[str, Any]:
        template = deployment["spec"]["template"]
        spec = dict(template["spec"])
        claims = [
            v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes", []) if "persistentVolumeClaim" in v
        ]
        missing = [c for c in claims if (CLAIMS, namespace, c) not in live]
        node = _node_for(spec, [raw for (res, _, _), raw in live.items() if res == kmock.resource("", "v1", "nodes")])
        started = datetime.now(tz=UTC).isoformat()
        if missing or node is None:
            why = f'persistentvolumeclaim "{missing[0]}" not found' if missing else "0 nodes are available"
            condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": why}
            status: dict[str, Any] = {"phase": "Pending", "conditions": [condition]}
        else:
            spec["nodeName"] = node
            running = {"running": {"startedAt": started}}
            container = {"name": spec["containers"][0]["name"], "image": spec["containers"][0]["image"],
                         "imageID": "", "ready": True, "restartCount": 0, "state": running}  # fmt: skip
            status = {"phase": "Running", "startTime": started, "containerStatuses": [container]}
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{name}-{next(self._pod_ids)}", "namespace": namespace,
                         "labels": dict(template["metadata"]["labels"]),
                         "annotations": {"emulator/deployment": name}, "creationTimestamp": started},
            "spec": spec, "status": status,
        }  # fmt: skip
        _validate(pod)  # what it answers is valid too
        return pod

    def _object(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return dict(self.objects[key].raw)

    async def _serve_list(self, request: Any) -> Any:
        """kmock's list, a page at a time where `limit` asks for one."""
        listed: dict[str, Any] = await super()._serve_list(request)  # type: ignore[assignment]
        limit = int(request.params.get("limit") or 0)
        if not limit:
            return listed
        token = request.params.get("continue") or ""
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode() or 0)
        except ValueError as exc:
            raise kmock.KubernetesError(
                status=410, reason="Expired", message="The provided continue is invalid."
            ) from exc
        items = listed["items"][start : start + limit]
        more = start + limit < len(listed["items"])
        metadata = {"resourceVersion": "1"}
        if more:
            metadata["continue"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
        return {"metadata": metadata, "items": items}


def _validate(body: dict[str, Any], resource: Any = None) -> None:
    """The strict schema of its kind (named by the URL where the body does not say, as the API server
    does), or 422 Invalid naming what is wrong."""
    if resource is not None:
        info = RESOURCES.get(f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/"))
        api_version = f"{resource.group}/{resource.version}".lstrip("/")
        body = {"apiVersion": api_version, "kind": info.kind if info else "", **body}
    try:
        schema_check(body)
    except kubernetes_validate.ValidationError as exc:
        raise kmock.KubernetesError(
            status=422, reason="Invalid", message=f"{body.get('kind')} is invalid: {exc}"
        ) from exc


def _node_for(spec: dict[str, Any], nodes: list[dict[str, Any]]) -> str | None:
    """The first node whose labels satisfy the pod's required node affinity (In / NotIn)."""
    affinity = spec.get("affinity", {}).get("nodeAffinity", {})
    terms = affinity.get("requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms", [{}])
    for node in nodes:
        labels = node.get("metadata", {}).get("labels", {})
        for term in terms:
            if all(_satisfies(labels, rule) for rule in term.get("matchExpressions", [])):
                return str(node["metadata"]["name"])
    return None


def _satisfies(labels: dict[str, str], rule: dict[str, Any]) -> bool:
    inside = labels.get(rule["key"]) in rule.get("values", [])
    return inside if rule["operator"] == "In" else not inside


def _gib(quantity: str) -> int:
    return int(quantity.removesuffix("Gi"))


class EmulatedCluster:
    """Start with `start()`, stop with `stop()`; `url` is the API server, `core`/`apps` a client."""

    def __init__(self, *, kubelet: bool = False) -> None:
        self.handler = Cluster()
        self.handler.kubelet = kubelet
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
    def api_client(self) -> client.ApiClient:
        assert self._api_client is not None
        return self._api_client

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
    addresses: dict[str, str] | None = None,
) -> None:
    node = client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1NodeSpec(unschedulable=unschedulable),
        status=client.V1NodeStatus(
            allocatable=allocatable,
            conditions=[client.V1NodeCondition(type="Ready", status="True")],
            addresses=[client.V1NodeAddress(type=kind, address=at) for kind, at in (addresses or {}).items()] or None,
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


def add_storage_class(cluster: EmulatedCluster, name: str, *, expandable: bool, default: bool = False) -> None:
    annotations = {DEFAULT_CLASS: "true"} if default else None
    storage_class = client.V1StorageClass(
        api_version="storage.k8s.io/v1", kind="StorageClass",
        metadata=client.V1ObjectMeta(name=name, annotations=annotations),
        provisioner="csi.example.com", allow_volume_expansion=expandable,
    )  # fmt: skip
    client.StorageV1Api(cluster.api_client).create_storage_class(storage_class, _request_timeout=TIMEOUT)
