"""RunPod's REST API v2 for tests: the GPU catalog, pods (create, get, list, delete, logs) and RunPod's
HTTP proxy (`https://{podId}-{port}.proxy.runpod.net`), with state, in RunPod's shapes (every request
and answer is checked against the published description by FakeCloud).

What it plays, beside the base's faults (`fail`):
- stock: each GPU type has free GPUs per (cloud tier, data center); a pod takes `count` of them and a
  deleted pod gives them back; the catalog reports the level (NONE/LOW/MEDIUM/HIGH) for a tier and count;
- no capacity as RunPod answers it: 400, an RFC 9457 problem with only a human `detail`;
- rate limits: `quota` requests left in the window, told in the `RateLimit` header of each answer; once
  spent, 429 with `Retry-After` (the window's reset) until `quota` is set again;
- pods boot PROVISIONING -> STARTING -> RUNNING over `boot_seconds`; the engine (a simulator answering
  only the secret the container's image reads from its environment) starts `engine_delay` seconds after
  RUNNING: a pod that reports running before its engine answers;
- `terminate_seconds`: a delete is accepted (204) and the pod stays until then; `vanish` (preemption, a
  host failure): the pod is gone from every answer at once; `exit`: the container stops (EXITED);
- network volumes (`/v2/network-volumes`): each in one data center, 10 to 4096 GB, grown only (a smaller
  size is a 400); a pod mounting one (`mounts.network`) is placed in that data center or refused (400
  listing the rule in `errors`, which no retry fixes); no pagination, as the description has none;
- ports: a running pod reports each `/tcp` port at a public address and mapped port (`runtime.ports`,
  and `ssh.direct` for 22), each `/http` port through the proxy;
- the proxy forwards `/{podId}-{port}/...` to the pod's engine (502 while nothing answers on that port,
  404 for no such pod), streaming; with `proxy_idle_seconds` it cuts a connection that carried no byte
  that long, as RunPod's edge does after about 100 s.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from tests.fakes.clouds.base import FakeCloud, Machine
from tests.fakes.engine_box import AppThread

NO_CAPACITY = (
    "There are no longer any instances available with the requested specifications. Please refresh and try again."
)
DATACENTERS = {
    "US-GA-1": "US Georgia 1", "US-GA-2": "US Georgia 2", "US-NC-1": "US North Carolina 1",
    "US-DE-1": "US Delaware 1", "CA-MTL-1": "CA Montreal 1", "EU-RO-1": "EU Romania 1",
}  # fmt: skip
# Which variable each engine image reads its secret from (what the real images do).
KEY_ENV_BY_IMAGE = (("vllm/", "VLLM_API_KEY"), ("ghcr.io/ggml-org/llama.cpp", "LLAMA_API_KEY"))
CUSTOM_KEY_ENV = "GPUCLOUD_ENGINE_API_KEY"
ACTIONS = {
    "PROVISIONING": ["stop", "terminate"], "STARTING": ["stop", "terminate"],
    "RUNNING": ["stop", "restart", "terminate"], "EXITED": ["start", "terminate"], "ERROR": ["start", "terminate"],
}  # fmt: skip
HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "content-length"})


@dataclass
class Gpu:
    """A GPU type of the catalog: prices per GPU and hour (None: not on that cloud), the most GPUs a pod
    of it may have per cloud, and free GPUs per (cloud, data center)."""

    id: str
    name: str
    memory: int
    secure: float | None
    community: float | None
    manufacturer: str = "NVIDIA"
    max_secure: int = 8
    max_community: int = 8
    free: dict[tuple[str, str], int] = field(default_factory=dict)

    def price(self, cloud: str) -> float | None:
        return self.secure if cloud == "SECURE" else self.community

    def max_count(self, cloud: str) -> int:
        return self.max_secure if cloud == "SECURE" else self.max_community


def default_gpus() -> list[Gpu]:
    return [
        Gpu("NVIDIA L40S", "L40S", 48, 0.86, 0.79,
            free={("SECURE", "US-GA-1"): 2, ("SECURE", "US-GA-2"): 1, ("COMMUNITY", "US-GA-2"): 1,
                  ("SECURE", "CA-MTL-1"): 4}),
        Gpu("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.99, 2.69,
            free={("SECURE", "US-GA-1"): 8, ("COMMUNITY", "US-NC-1"): 1}),
        Gpu("NVIDIA H100 PCIe", "H100 PCIe", 80, 2.39, 1.99, max_secure=4, max_community=2,
            free={("SECURE", "US-GA-1"): 0, ("SECURE", "US-DE-1"): 2}),
        Gpu("AMD Instinct MI300X OAM", "MI300X", 192, 2.49, None, manufacturer="AMD", max_community=0,
            free={("SECURE", "US-GA-1"): 8}),
        Gpu("NVIDIA GeForce RTX 5090", "RTX 5090", 32, 0.94, 0.69, free={("COMMUNITY", "EU-RO-1"): 4}),
    ]  # fmt: skip


class RunPodCloud(FakeCloud):
    spec: ClassVar[str] = "runpod"
    server_url: ClassVar[str] = "https://api.runpod.io"
    api_key: ClassVar[str] = "rpa_test_key"
    error_content_type: ClassVar[str] = "application/problem+json"

    def __init__(
        self, *, gpus: list[Gpu] | None = None, proxy_idle_seconds: float | None = None, quota: int | None = None,
        quota_reset_seconds: int = 12, **knobs: float,
    ) -> None:  # fmt: skip
        super().__init__(**knobs)
        self.gpus = {gpu.id: gpu for gpu in (gpus if gpus is not None else default_gpus())}
        self.proxy_idle_seconds = proxy_idle_seconds
        self.quota = quota
        self.quota_reset_seconds = quota_reset_seconds
        self.deleted: dict[str, Machine] = {}  # pods deleted (or vanished): gone from every answer
        self.vanished: set[str] = set()  # of those, the ones taken away rather than deleted
        self.proxied: list[str] = []  # paths the proxy forwarded
        self.volumes: dict[str, dict[str, Any]] = {}  # network volumes, in RunPod's shape
        self.public_ip = "127.0.0.1"  # where a pod's TCP ports are published (its public IP)
        self._proxy: AppThread | None = None
        self._session: aiohttp.ClientSession | None = None

    # --- server -------------------------------------------------------------------------------
    def start(self, *, port: int = 0, proxy_port: int = 0) -> RunPodCloud:
        """The API on `port` and the pods' HTTP proxy on `proxy_port` (0: any free one)."""
        super().start(port=port)
        proxy = web.Application()
        proxy.router.add_route("*", "/{target}/{path:.*}", self._proxy_request)
        proxy.on_cleanup.append(self._close_session)
        self._proxy = AppThread(proxy, port=proxy_port)
        return self

    def stop(self) -> None:
        super().stop()
        if self._proxy is not None:
            self._proxy.power_off()

    @property
    def proxy_url_template(self) -> str:
        """Where the driver is to find pods' ports (its `proxy_url_template`)."""
        assert self._proxy is not None, "start() the test cloud first"
        return f"{self._proxy.url}/{{pod_id}}-{{port}}"

    def routes(self, app: web.Application) -> None:
        app.middlewares.append(self._rate_limited)
        app.router.add_get("/v2/catalog/gpus", self._catalog_gpus)
        app.router.add_get("/v2/pods", self._list_pods)
        app.router.add_post("/v2/pods", self._create_pod)
        app.router.add_get("/v2/pods/{id}", self._get_pod)
        app.router.add_delete("/v2/pods/{id}", self._delete_pod)
        app.router.add_get("/v2/pods/{id}/logs", self._pod_logs)
        app.router.add_get("/v2/network-volumes", self._list_volumes)
        app.router.add_post("/v2/network-volumes", self._create_volume)
        app.router.add_get("/v2/network-volumes/{id}", self._get_volume)
        app.router.add_patch("/v2/network-volumes/{id}", self._update_volume)
        app.router.add_delete("/v2/network-volumes/{id}", self._delete_volume)

    def error_body(self, status: int, message: str) -> Any:
        return {"title": _TITLES.get(status, "Error"), "status": status, "detail": message}

    # --- what tests do to pods ----------------------------------------------------------------
    def exit(self, pod_id: str) -> None:
        """The pod's container stops (it crashed, or was stopped): EXITED, the engine gone, the pod kept."""
        with self.lock:
            machine = self.machines[pod_id]
            machine.extra["exited"] = True
            engine, machine.engine = machine.engine, None
        self.log(machine, "container exited with code 1")
        if engine is not None:
            engine.power_off()

    def vanish(self, machine_id: str) -> None:
        with self.lock:
            self.deleted[machine_id] = self.machines[machine_id]
            self.vanished.add(machine_id)
        super().vanish(machine_id)

    def pod_of(self, instance_id: str) -> Machine:
        with self.lock:
            return next(m for m in self.machines.values() if m.request["name"].endswith(f".{instance_id}"))

    def log(self, machine: Machine, line: str) -> None:
        with self.lock:
            machine.extra.setdefault("logs", []).append((_iso(time.time()), line))

    def add_pod(self, body: dict[str, Any]) -> Machine:
        """A pod someone else created in the account (the operator by hand, another platform)."""
        with self.lock:
            return self._create(body, "US-GA-1")

    # --- catalog ------------------------------------------------------------------------------
    async def _catalog_gpus(self, request: web.Request) -> web.Response:
        query = request.query
        include = [v for v in query.get("include", "").split(",") if v]
        scoped = [name for name in ("product", "count", "cloud", "countryCodes", "cudaVersions") if name in query]
        if "AVAILABILITY" in include and "product" not in query:
            return self.problem(400, "product is required with include=AVAILABILITY")
        if "AVAILABILITY" not in include and scoped:
            return self.problem(400, f"{scoped[0]} is valid only with include=AVAILABILITY")
        cloud, count = query.get("cloud", "SECURE"), int(query.get("count", "1"))
        with self.lock:
            gpus = [self._gpu_type(gpu, cloud, count if "AVAILABILITY" in include else None)
                    for gpu in self.gpus.values()]  # fmt: skip
        return self.answer({"gpus": gpus})

    def _gpu_type(self, gpu: Gpu, cloud: str, count: int | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": gpu.id, "name": gpu.name, "pool": None, "manufacturer": gpu.manufacturer, "memory": gpu.memory,
            "secure": gpu.secure is not None, "community": gpu.community is not None,
            "price": {"secure": gpu.secure or 0.0, "community": gpu.community or 0.0},
            "maxCount": {"secure": gpu.max_secure, "community": gpu.max_community},
        }  # fmt: skip
        if count is None:
            return body
        levels = {}
        if gpu.price(cloud) is not None and count <= gpu.max_count(cloud):
            levels = {dc: _level(free // count) for (c, dc), free in sorted(gpu.free.items()) if c == cloud}
        order = ["NONE", "LOW", "MEDIUM", "HIGH"]
        body["availability"] = max(levels.values(), key=order.index, default="NONE")
        if body["availability"] != "NONE":  # omitted when unavailable everywhere
            body["dataCenters"] = [{"id": dc, "name": DATACENTERS.get(dc, dc), "availability": level}
                                   for dc, level in levels.items()]  # fmt: skip
        return body

    # --- pods ---------------------------------------------------------------------------------
    async def _list_pods(self, request: web.Request) -> web.Response:
        self.settle()
        with self.lock:
            return self.answer({"pods": [self.pod_answer(m) for m in self.machines.values()]})

    async def _get_pod(self, request: web.Request) -> web.Response:
        self.settle()
        with self.lock:
            machine = self.machines.get(request.match_info["id"])
            if machine is None:
                return self.problem(404, "pod not found")
            return self.answer(self.pod_answer(machine))

    async def _create_pod(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "gpu" not in body:
            return self.problem(400, "exactly one of gpu or cpu must be set (this test cloud runs GPU pods)")
        gpu, count = self.gpus.get(body["gpu"]["id"]), int(body["gpu"].get("count", 1))
        cloud = body.get("cloud", "SECURE")  # RunPod's default
        if gpu is None:
            return self.problem(400, f"unknown GPU type {body['gpu']['id']!r}")
        if gpu.price(cloud) is None or count > gpu.max_count(cloud):
            return self.problem(400, f"{gpu.id} pods have at most {gpu.max_count(cloud)} GPUs on {cloud}")
        with self.lock:
            wanted = body.get("dataCenterIds") or sorted({dc for c, dc in gpu.free if c == cloud})
            network = (body.get("mounts") or {}).get("network") or []
            if network:
                volume = self.volumes.get(network[0]["volumeId"])
                if volume is None:
                    return self.problem(404, f"network volume {network[0]['volumeId']} not found")
                if volume["dataCenter"] not in wanted:
                    rule = f"network volume {volume['id']} is in {volume['dataCenter']}, not in dataCenterIds"
                    return self.problem(400, rule, errors=[f"$.mounts.network[0].volumeId: {rule}"])
                wanted = [volume["dataCenter"]]
            datacenter = next((dc for dc in wanted if gpu.free.get((cloud, dc), 0) >= count), None)
            if datacenter is None:
                return self.problem(400, NO_CAPACITY)
            gpu.free[(cloud, datacenter)] -= count
            machine = self._create(body, datacenter)
        self.log(machine, f"pulling image {body['image']}")
        timer = threading.Timer(self.boot_seconds, self._running, (machine,))
        timer.daemon = True
        timer.start()
        return self.answer(self.pod_answer(machine), 201)

    def _create(self, body: dict[str, Any], datacenter: str) -> Machine:
        pod_id = secrets.token_hex(7)
        machine = Machine(id=pod_id, request=body, state="PROVISIONING", extra={"datacenter": datacenter})
        self.machines[pod_id] = machine
        return machine

    def _running(self, machine: Machine) -> None:
        """The container started (RUNNING); the engine follows `engine_delay` later."""
        if machine.ended_at is not None:
            return
        self.log(machine, "container started")
        self.boot(machine, _engine_key(machine.request))

    async def _delete_pod(self, request: web.Request) -> web.Response:
        self.settle()
        pod_id = request.match_info["id"]
        with self.lock:
            machine = self.machines.get(pod_id)
            if machine is None:
                return self.problem(404, "pod not found")
            machine.extra.setdefault("deleting_at", time.time())
        self.settle()
        return web.Response(status=204)

    def settle(self) -> None:
        """Deletions whose time has come: the pod goes, its GPUs are free again."""
        now = time.time()
        with self.lock:
            due = [m for m in self.machines.values()
                   if "deleting_at" in m.extra and now >= m.extra["deleting_at"] + self.terminate_seconds]  # fmt: skip
            for machine in due:
                del self.machines[machine.id]
                self.deleted[machine.id] = machine
                gpu = self.gpus.get(machine.request["gpu"]["id"])
                key = (machine.request.get("cloud", "SECURE"), machine.extra["datacenter"])
                if gpu is not None and key in gpu.free:
                    gpu.free[key] += int(machine.request["gpu"].get("count", 1))
        for machine in due:
            self.power_off(machine)

    def status_of(self, machine: Machine) -> str:
        if machine.extra.get("exited"):
            return "EXITED"
        age = time.time() - machine.created_at
        if age < self.boot_seconds / 2:
            return "PROVISIONING"
        return "STARTING" if age < self.boot_seconds else "RUNNING"

    def pod_answer(self, machine: Machine) -> dict[str, Any]:
        request, status = machine.request, self.status_of(machine)
        gpu = self.gpus.get(request.get("gpu", {}).get("id", ""))
        count = int(request.get("gpu", {}).get("count", 1))
        cloud = request.get("cloud", "SECURE")
        running = status == "RUNNING"
        price = (gpu.price(cloud) or 0.0) * count if gpu else 0.0
        pod = {
            "id": machine.id, "name": request["name"], "status": status, "actions": ACTIONS[status],
            "image": request.get("image", ""), "args": request.get("args", ""), "disk": request.get("disk", 20),
            "mounts": request.get("mounts", {}), "ports": request.get("ports", []), "env": request.get("env", {}),
            "registry": None,
            "cloud": cloud, "dataCenterId": machine.extra["datacenter"],
            "cudaVersion": "12.8" if gpu is not None and gpu.manufacturer == "NVIDIA" else None,
            "ssh": {"proxy": None, "direct": self._ssh_direct(machine) if running else None}, "template": None,
            "cost": round(price, 4) if status != "EXITED" else 0.0, "locked": False,
            "runtime": {"uptime": int(time.time() - machine.created_at - self.boot_seconds),
                        "gpus": [{"util": 0, "memoryUtil": 0}] * count,
                        "ports": [self._runtime_port(machine, p) for p in request.get("ports", [])]}
            if running else None,
            "createdAt": _iso(machine.created_at),
            "startedAt": _iso(machine.created_at + self.boot_seconds) if running else None,
            "globalNetworking": {"enabled": False},
        }  # fmt: skip
        if "gpu" in request:
            pod["gpu"] = {"id": request["gpu"]["id"], "count": count}
        return pod

    def _runtime_port(self, machine: Machine, entry: str) -> dict[str, Any]:
        """A published port as RunPod reports it: TCP at the public IP and a mapped port; HTTP through the proxy."""
        number, _, protocol = entry.partition("/")
        if protocol != "tcp":
            return {"private": int(number), "public": None, "type": "http", "ip": None}
        mapped = machine.extra.setdefault("mapped", {}).setdefault(number, 30000 + secrets.randbelow(30000))
        return {"private": int(number), "public": mapped, "type": "tcp", "ip": self.public_ip}

    def _ssh_direct(self, machine: Machine) -> dict[str, Any] | None:
        if "22/tcp" not in machine.request.get("ports", []):
            return None
        port = self._runtime_port(machine, "22/tcp")["public"]
        return {"host": self.public_ip, "port": port, "username": "root",
                "command": f"ssh root@{self.public_ip} -p {port}"}  # fmt: skip

    # --- network volumes ----------------------------------------------------------------------
    async def _list_volumes(self, request: web.Request) -> web.Response:
        with self.lock:
            return self.answer({"networkVolumes": list(self.volumes.values())})

    async def _create_volume(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["dataCenter"] not in DATACENTERS:
            return self.problem(400, f"unknown data center {body['dataCenter']!r}")
        volume = {"id": secrets.token_hex(5), "name": body["name"], "size": body["size"],
                  "dataCenter": body["dataCenter"], "type": body.get("type", "STANDARD")}  # fmt: skip
        with self.lock:
            self.volumes[volume["id"]] = volume
        return self.answer(volume, 201)

    async def _get_volume(self, request: web.Request) -> web.Response:
        with self.lock:
            volume = self.volumes.get(request.match_info["id"])
        return self.answer(volume) if volume is not None else self.problem(404, "network volume not found")

    async def _update_volume(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            volume = self.volumes.get(request.match_info["id"])
            if volume is None:
                return self.problem(404, "network volume not found")
            if "size" in body and body["size"] < volume["size"]:
                return self.problem(400, f"network volume size cannot be reduced below {volume['size']} GB")
            volume.update({k: body[k] for k in ("name", "size") if k in body})
            return self.answer(volume)

    async def _delete_volume(self, request: web.Request) -> web.Response:
        with self.lock:
            if self.volumes.pop(request.match_info["id"], None) is None:
                return self.problem(404, "network volume not found")
        return web.Response(status=204, headers=self._rate_headers())

    def add_volume(self, name: str, datacenter: str = "US-GA-1", size: int = 20) -> dict[str, Any]:
        """A network volume someone else made in the account."""
        volume: dict[str, Any] = {
            "id": secrets.token_hex(5),
            "name": name,
            "size": size,
            "dataCenter": datacenter,
            "type": "STANDARD",
        }
        with self.lock:
            self.volumes[volume["id"]] = volume
        return volume

    async def _pod_logs(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: the last `tail` lines, then new ones as they come, while the pod lives."""
        self.settle()
        pod_id = request.match_info["id"]
        with self.lock:
            machine = self.machines.get(pod_id)
        if machine is None:
            return self.problem(404, "pod not found")
        tail = int(request.query.get("tail", "100"))
        source = request.query.get("source", "container")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        with self.lock:
            sent = len(machine.extra.get("logs", []))
            backfill = machine.extra.get("logs", [])[max(0, sent - tail) :] if tail else []
        for ts, line in backfill:
            await response.write(_event(source, ts, line))
        deadline = time.monotonic() + 60
        while pod_id in self.machines and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            with self.lock:
                new, sent = machine.extra.get("logs", [])[sent:], len(machine.extra.get("logs", []))
            for ts, line in new:
                await response.write(_event(source, ts, line))
        return response

    # --- rate limits and answers ----------------------------------------------------------------
    @web.middleware
    async def _rate_limited(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self.lock:
            spent = self.quota is not None and self.quota <= 0
            if self.quota is not None and not spent:
                self.quota -= 1
        if spent:
            return self.problem(429, "rate limit exceeded for the minute window",
                                headers={"Retry-After": str(self.quota_reset_seconds)})  # fmt: skip
        return await handler(request)

    def answer(self, body: Any, status: int = 200) -> web.Response:
        return web.json_response(body, status=status, headers=self._rate_headers())

    def problem(
        self, status: int, detail: str, headers: dict[str, str] | None = None, errors: list[str] | None = None
    ) -> web.Response:
        body = self.error_body(status, detail) | ({"errors": errors} if errors else {})
        return web.json_response(
            body, status=status, content_type=self.error_content_type,
            headers={**self._rate_headers(), **(headers or {})},
        )  # fmt: skip

    def _rate_headers(self) -> dict[str, str]:
        if self.quota is None:
            return {}
        reset = self.quota_reset_seconds
        return {"RateLimit": f'"minute";r={max(self.quota, 0)};t={reset}', "RateLimit-Policy": '"minute";q=100;w=60'}

    # --- the proxy --------------------------------------------------------------------------------
    async def _proxy_request(self, request: web.Request) -> web.StreamResponse:
        pod_id, _, port = request.match_info["target"].rpartition("-")
        self.settle()
        with self.lock:
            machine = self.machines.get(pod_id)
            engine = machine.engine if machine is not None else None
            published = machine is not None and f"{port}/http" in machine.request.get("ports", [])
            running = machine is not None and self.status_of(machine) == "RUNNING"
        if machine is None:
            return web.Response(status=404, text="404 page not found")
        if engine is None or not published or not running:
            return web.Response(status=502, text="502 Bad Gateway")
        self.proxied.append(request.match_info["path"])
        return await self._forward(request, engine.url)

    async def _forward(self, request: web.Request, engine_url: str) -> web.StreamResponse:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        url = f"{engine_url}/{request.match_info['path']}"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            upstream = await self._session.request(request.method, url, params=request.query, headers=headers,
                                                   data=await request.read())  # fmt: skip
        except aiohttp.ClientError:
            return web.Response(status=502, text="502 Bad Gateway")
        async with upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS
            })  # fmt: skip
            await response.prepare(request)
            while True:
                try:
                    chunk = await asyncio.wait_for(upstream.content.readany(), self.proxy_idle_seconds)
                except (TimeoutError, aiohttp.ClientError):
                    if request.transport is not None:  # idle too long, or the engine went: cut, as the edge does
                        request.transport.abort()
                    return response
                if not chunk:
                    break
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _close_session(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()


_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
           422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}  # fmt: skip


def _level(pods: int) -> str:
    return "NONE" if pods <= 0 else "LOW" if pods <= 2 else "MEDIUM" if pods < 10 else "HIGH"


def _engine_key(request: dict[str, Any]) -> str:
    """The secret the container's engine reads, from the variable its image reads it from; an engine
    given none answers nobody (as a production engine with a random key would)."""
    image, env = str(request.get("image", "")), request.get("env") or {}
    variable = next((var for prefix, var in KEY_ENV_BY_IMAGE if image.startswith(prefix)), CUSTOM_KEY_ENV)
    return str(env.get(variable) or secrets.token_hex(16))


def _event(source: str, ts: str, line: str) -> bytes:
    data = json.dumps({"source": source, "line": line, "ts": ts})
    return f"id: {ts}\ndata: {data}\n\n".encode()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat().replace("+00:00", "Z")
