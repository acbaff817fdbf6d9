"""DigitalOcean for tests: the part of its API the digitalocean driver uses (sizes, droplets, tags,
Cloud Firewalls), with state and DigitalOcean's shapes, every request and answer checked against its
published description (specs/digitalocean.json).

How it behaves, as DigitalOcean does:
- POST /v2/droplets answers 202 with the droplet `new` and no address; it turns `active` with a public
  IPv4 address after `boot_seconds`, and cloud-init runs its user_data: the engine simulator starts
  there (after `engine_delay`: running before the engine answers) on the port the script's `docker run
  -p` publishes, answering only the secret the script wrote to the engine's env file. A script that
  publishes no port or writes no secret boots a machine whose engine never answers;
- a size in a region with no capacity left (`capacity[(size, region)] = 0`), or not sold there,
  answers 422 {"id": "unprocessable_entity", "message": "Size is not available in this region."};
- DELETE answers 204 at once; the droplet powers off (`off`, its engine gone) and is still listed and
  shown until `terminate_seconds` later, then 404;
- GET /v2/droplets without a filter lists non-GPU droplets only, `type=gpus` GPU droplets only; a
  `tag_name` filter lists every droplet with the tag (`tag_filter_lists_gpus=False` plays the other
  reading of the description: GPU droplets left out there too); pages of `per_page` (20 by default,
  at most 200) linked by links.pages.next/last with meta.total;
- a firewall may name only tags that exist; creating a tag that exists is a no-op;
- a `tag_name` filter combined with `name` or `type` (which the description forbids) answers 422;
- every answer carries the ratelimit-limit/-remaining/-reset headers;
- volumes (/v2/volumes): listed by name or region (never by tag), in pages; created formatted where
  asked, in a region of the description's; attached at droplet create (`volumes`: each must exist, be
  in the droplet's region and attached to no other droplet, else 422), detached once the droplet is
  gone; a resize action grows one (a smaller or equal size answers 422); deleting one still attached
  answers 422 (the droplet's deletion under way), one gone 404.

The driver uses none of pydo's other operations; everything else (faults, 429s, timeouts) comes from
FakeCloud.fail(...).
"""

from __future__ import annotations

import itertools
import shlex
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiohttp import web

from tests.fakes.clouds.base import FakeCloud, Machine

ENGINE_KEYS = ("VLLM_API_KEY", "LLAMA_API_KEY", "GPUCLOUD_ENGINE_API_KEY")
ERROR_IDS = {400: "bad_request", 401: "unauthorized", 404: "not_found", 422: "unprocessable_entity",
             429: "too_many_requests", 500: "server_error"}  # fmt: skip
NOT_HERE = "Size is not available in this region."
MAX_USER_DATA = 64 * 1024
RATE_LIMIT = 5000
REGION_NAMES = {"atl1": "Atlanta 1", "nyc2": "New York 2", "tor1": "Toronto 1", "ric1": "Richmond 1"}


def gpu_size(
    slug: str, *, price: float, regions: list[str], model: str | None, count: int, vram: int, available: bool = True
) -> dict[str, Any]:
    """A GPU size as GET /v2/sizes lists it (`model` None: one without gpu_info)."""
    size: dict[str, Any] = {
        "slug": slug, "memory": 245760 * count, "vcpus": 20 * count, "disk": 720 * count, "transfer": 15.0,
        "price_monthly": round(price * 672, 2), "price_hourly": price, "regions": regions, "available": available,
        "description": f"{slug} GPU droplet",
        "disk_info": [{"type": "local", "size": {"amount": 720 * count, "unit": "gib"}},
                      {"type": "scratch", "size": {"amount": 5120 * count, "unit": "gib"}}],
    }  # fmt: skip
    if model is not None:
        size["gpu_info"] = {"count": count, "model": model, "vram": {"amount": vram, "unit": "gib"}}
    return size


def default_sizes() -> list[dict[str, Any]]:
    """DigitalOcean's GPU sizes in reference/000's regions (prices per hour, as DigitalOcean lists
    them on demand), one CPU size, and one GPU the catalog does not know."""
    return [
        gpu_size("gpu-h100x1-80gb", price=3.39, regions=["nyc2", "tor1", "atl1"], model="nvidia_h100", count=1,
                 vram=80),
        gpu_size("gpu-h100x8-640gb", price=23.92, regions=["nyc2", "tor1"], model="nvidia_h100", count=8, vram=80),
        gpu_size("gpu-mi300x1-192gb", price=1.99, regions=["atl1", "ric1"], model="amd_mi300x", count=1, vram=192),
        gpu_size("gpu-mi300x8-1536gb", price=15.92, regions=["atl1", "ric1"], model="amd_mi300x", count=8,
                 vram=192),
        gpu_size("gpu-mi325x1-256gb", price=2.29, regions=["atl1"], model="amd_mi325x", count=1, vram=256),
        gpu_size("gpu-mi325x8-2048gb", price=18.32, regions=["atl1", "ric1"], model=None, count=8, vram=256),
        gpu_size("gpu-l40sx1-48gb", price=1.57, regions=["tor1", "nyc2"], model="nvidia_l40s", count=1, vram=48),
        gpu_size("gpu-4000adax1-20gb", price=0.76, regions=["tor1"], model="nvidia_rtx_4000_ada", count=1, vram=20),
        {"slug": "s-1vcpu-1gb", "memory": 1024, "vcpus": 1, "disk": 25, "transfer": 1.0, "price_monthly": 6.0,
         "price_hourly": 0.00893, "regions": ["nyc2", "tor1", "atl1"], "available": True, "description": "Basic"},
    ]  # fmt: skip


class FakeDigitalOcean(FakeCloud):
    spec: ClassVar[str] = "digitalocean"
    server_url: ClassVar[str] = "https://api.digitalocean.com"

    def __init__(self, *, tag_filter_lists_gpus: bool = True, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.sizes = default_sizes()
        self.capacity: dict[tuple[str, str], int] = {}  # (size, region) -> droplets left; absent: plenty
        self.tag_filter_lists_gpus = tag_filter_lists_gpus
        self.tags: set[str] = set()
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.removed: list[str] = []  # droplets gone after a deletion (404 from then on)
        self._ids = itertools.count(448543583)
        self.volumes: dict[str, dict[str, Any]] = {}
        self._actions = itertools.count(1_000_000)
        self._timers: list[threading.Timer] = []

    # --- routes -------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/sizes", self._sizes)
        app.router.add_get("/v2/droplets", self._droplets)
        app.router.add_post("/v2/droplets", self._create)
        app.router.add_get("/v2/droplets/{id}", self._droplet)
        app.router.add_delete("/v2/droplets/{id}", self._delete)
        app.router.add_post("/v2/tags", self._tag_create)
        app.router.add_get("/v2/firewalls", self._firewalls)
        app.router.add_post("/v2/firewalls", self._firewall_create)
        app.router.add_put("/v2/firewalls/{id}", self._firewall_update)
        app.router.add_delete("/v2/firewalls/{id}", self._firewall_delete)
        app.router.add_get("/v2/volumes", self._volumes)
        app.router.add_post("/v2/volumes", self._volume_create)
        app.router.add_get("/v2/volumes/{id}", self._volume)
        app.router.add_delete("/v2/volumes/{id}", self._volume_delete)
        app.router.add_post("/v2/volumes/{id}/actions", self._volume_action)

    def error_body(self, status: int, message: str) -> Any:
        return {"id": ERROR_IDS.get(status, "unprocessable_entity"), "message": message,
                "request_id": str(uuid.uuid4())}  # fmt: skip

    def json_response(self, body: Any, status: int = 200) -> web.Response:
        return web.json_response(body, status=status, headers=self.rate_headers())

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response(self.error_body(status, message), status=status, headers=self.rate_headers())

    def rate_headers(self, remaining: int | None = None) -> dict[str, str]:
        with self.lock:
            used = len(self.calls)
        left = max(0, RATE_LIMIT - used) if remaining is None else remaining
        return {"ratelimit-limit": str(RATE_LIMIT), "ratelimit-remaining": str(left),
                "ratelimit-reset": str(int(time.time()) + 60)}  # fmt: skip

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        super().stop()

    # --- sizes --------------------------------------------------------------------------------
    async def _sizes(self, request: web.Request) -> web.Response:
        return self._page(request, "sizes", self.sizes)

    # --- droplets -----------------------------------------------------------------------------
    async def _droplets(self, request: web.Request) -> web.Response:
        query = request.query
        if "tag_name" in query and ("name" in query or "type" in query):  # the description forbids it
            return self.error(422, "tag_name can not be combined with name or type.")
        with self.lock:
            machines = sorted(self.machines.values(), key=lambda m: int(m.id))
        if "tag_name" in query:
            listed = [m for m in machines if query["tag_name"] in m.request.get("tags", [])
                      and (self.tag_filter_lists_gpus or not self._is_gpu(m))]  # fmt: skip
        else:
            listed = [m for m in machines if self._is_gpu(m) == (query.get("type") == "gpus")]
            if "name" in query:
                listed = [m for m in listed if m.request["name"].lower() == query["name"].lower()]
        return self._page(request, "droplets", [self._shown(m) for m in listed])

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "names" in body:
            return self.error(422, "The driver creates one droplet at a time; this test cloud does too.")
        size = next((s for s in self.sizes if s["slug"] == body["size"]), None)
        if size is None:
            return self.error(422, "You specified an invalid size for Droplet creation.")
        region = body.get("region", "")
        if len(body.get("user_data", "").encode()) > MAX_USER_DATA:
            return self.error(422, "user_data is limited to 64 KiB.")
        with self.lock:
            left = self.capacity.get((size["slug"], region))
            if region not in size["regions"] or not size["available"] or left == 0:
                return self.error(422, NOT_HERE)
            if refused := self._unattachable(body.get("volumes") or [], region):
                return self.error(422, refused)
            if left is not None:
                self.capacity[(size["slug"], region)] = left - 1
            machine = Machine(id=str(next(self._ids)), request=body, state="new", extra={"size": size})
            self.machines[machine.id] = machine
            self.tags.update(body.get("tags") or ())
            for volume_id in body.get("volumes") or []:
                self.volumes[volume_id]["droplet_ids"] = [int(machine.id)]
            shown = self._shown(machine)
        self._later(self.boot_seconds, self._activate, machine)
        links = {"actions": [{"id": int(machine.id) + 1, "rel": "create",
                              "href": f"{self.url}/v2/actions/{int(machine.id) + 1}"}]}  # fmt: skip
        return self.json_response({"droplet": shown, "links": links}, status=202)

    async def _droplet(self, request: web.Request) -> web.Response:
        with self.lock:
            machine = self.machines.get(request.match_info["id"])
            shown = self._shown(machine) if machine is not None else None
        if shown is None:
            return self.error(404, "The resource you were accessing could not be found.")
        return self.json_response({"droplet": shown})

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            machine = self.machines.get(request.match_info["id"])
            if machine is None:
                return self.error(404, "The resource you were accessing could not be found.")
            first = machine.state != "off"
            machine.state = "off"
        if first:
            self.power_off(machine)
            self._later(self.terminate_seconds, self._remove, machine)
        return web.Response(status=204, headers=self.rate_headers())

    # --- tags and firewalls ---------------------------------------------------------------------
    async def _tag_create(self, request: web.Request) -> web.Response:
        name = (await request.json())["name"]
        with self.lock:
            self.tags.add(name)
            count = sum(name in m.request.get("tags", []) for m in self.machines.values())
        resources = {"count": count, "droplets": {"count": count}}
        return self.json_response({"tag": {"name": name, "resources": resources}}, status=201)

    async def _firewalls(self, request: web.Request) -> web.Response:
        with self.lock:
            firewalls = list(self.firewalls.values())
        return self._page(request, "firewalls", firewalls)

    async def _firewall_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            if missing := self._unknown_tags(body):
                return self.error(422, f"tag {missing} does not exist")
            firewall = self.firewall_record(str(uuid.uuid4()), body)
            self.firewalls[firewall["id"]] = firewall
        return self.json_response({"firewall": firewall}, status=202)

    async def _firewall_update(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            if request.match_info["id"] not in self.firewalls:
                return self.error(404, "The resource you were accessing could not be found.")
            if missing := self._unknown_tags(body):
                return self.error(422, f"tag {missing} does not exist")
            firewall = self.firewall_record(request.match_info["id"], body)
            self.firewalls[firewall["id"]] = firewall
        return self.json_response({"firewall": firewall})

    async def _firewall_delete(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            if self.firewalls.pop(request.match_info["id"], None) is None:
                return self.error(404, "The resource you were accessing could not be found.")
        return web.Response(status=204, headers=self.rate_headers())

    def _unknown_tags(self, body: dict[str, Any]) -> str:
        return next((t for t in body.get("tags") or () if t not in self.tags), "")

    def firewall_record(self, firewall_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": firewall_id, "status": "succeeded", "created_at": _now(), "pending_changes": [],
                "name": body["name"], "droplet_ids": body.get("droplet_ids") or [], "tags": body.get("tags") or [],
                "inbound_rules": body.get("inbound_rules") or [],
                "outbound_rules": body.get("outbound_rules") or []}  # fmt: skip

    def firewalls_of(self, machine: Machine) -> list[dict[str, Any]]:
        """The firewalls in front of a droplet (by its tags or its id)."""
        tags = set(machine.request.get("tags", []))
        with self.lock:
            return [f for f in self.firewalls.values() if tags & set(f["tags"]) or int(machine.id) in f["droplet_ids"]]

    # --- volumes --------------------------------------------------------------------------------
    async def _volumes(self, request: web.Request) -> web.Response:
        with self.lock:
            listed = [v for v in self.volumes.values()
                      if request.query.get("name", v["name"]) == v["name"]
                      and request.query.get("region", v["region"]["slug"]) == v["region"]["slug"]]  # fmt: skip
        return self._page(request, "volumes", listed)

    async def _volume_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            if any(v["name"] == body["name"] and v["region"]["slug"] == body["region"] for v in self.volumes.values()):
                return self.error(422, "a volume with that name already exists in this region")
            volume = {
                "id": str(uuid.uuid4()), "droplet_ids": [], "name": body["name"], "description": "",
                "size_gigabytes": body["size_gigabytes"], "created_at": _now(), "tags": body.get("tags") or [],
                "filesystem_type": body.get("filesystem_type", ""), "filesystem_label": "",
                "region": {"name": REGION_NAMES.get(body["region"], body["region"]), "slug": body["region"],
                           "available": True, "features": ["storage"], "sizes": []},
            }  # fmt: skip
            self.volumes[volume["id"]] = volume
            self.tags.update(volume["tags"])
        return self.json_response({"volume": volume}, status=201)

    async def _volume(self, request: web.Request) -> web.Response:
        with self.lock:
            volume = self.volumes.get(request.match_info["id"])
        if volume is None:
            return self.error(404, "The resource you were accessing could not be found.")
        return self.json_response({"volume": volume})

    async def _volume_delete(self, request: web.Request) -> web.StreamResponse:
        with self.lock:
            volume = self.volumes.get(request.match_info["id"])
            if volume is None:
                return self.error(404, "The resource you were accessing could not be found.")
            if volume["droplet_ids"]:
                return self.error(422, "Volume is currently attached to a Droplet; detach it first.")
            del self.volumes[volume["id"]]
        return web.Response(status=204, headers=self.rate_headers())

    async def _volume_action(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            volume = self.volumes.get(request.match_info["id"])
            if volume is None:
                return self.error(404, "The resource you were accessing could not be found.")
            if body["type"] != "resize":
                return self.error(422, "The driver only resizes volumes; this test cloud does too.")
            if body["size_gigabytes"] <= volume["size_gigabytes"]:
                return self.error(422, "The new size must be larger than the volume's current size.")
            volume["size_gigabytes"] = body["size_gigabytes"]
            region = volume["region"]
        action = {"id": next(self._actions), "status": "in-progress", "type": "resize", "started_at": _now(),
                  "completed_at": None, "resource_id": None, "resource_type": "volume", "region": region,
                  "region_slug": region["slug"]}  # fmt: skip
        return self.json_response({"action": action}, status=202)

    def _unattachable(self, volume_ids: list[str], region: str) -> str:
        """Why DigitalOcean would refuse to attach these volumes to a new droplet in `region` ("" if not)."""
        for volume_id in volume_ids:
            volume = self.volumes.get(volume_id)
            if volume is None:
                return f"Volume {volume_id} could not be found."
            if volume["region"]["slug"] != region:
                return f"Volume {volume_id} is in {volume['region']['slug']}, not {region}."
            if volume["droplet_ids"]:
                return f"Volume {volume_id} is already attached to a Droplet."
        return ""

    # --- the machine's life -----------------------------------------------------------------------
    def _later(self, seconds: float, step: Any, machine: Machine) -> None:
        if seconds <= 0:
            step(machine)
            return
        timer = threading.Timer(seconds, step, (machine,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def _activate(self, machine: Machine) -> None:
        """Boot done: an address, `active`, and cloud-init runs the user_data (the engine starts)."""
        with self.lock:
            if machine.state != "new" or machine.id not in self.machines:
                return
            machine.address = self.new_address()
            machine.state = "active"
        secret, port = cloud_init(str(machine.request.get("user_data", "")))
        if secret is not None and port is not None:
            self.boot(machine, secret, port=port)

    def _remove(self, machine: Machine) -> None:
        with self.lock:
            if self.machines.pop(machine.id, None) is not None:
                self.removed.append(machine.id)
            for volume in self.volumes.values():  # DigitalOcean detaches a deleted droplet's volumes
                volume["droplet_ids"] = [d for d in volume["droplet_ids"] if d != int(machine.id)]

    def _is_gpu(self, machine: Machine) -> bool:
        return "gpu_info" in machine.extra["size"] or str(machine.request["size"]).startswith("gpu-")

    def _shown(self, machine: Machine) -> dict[str, Any]:
        """The droplet as DigitalOcean shows it (every field its description requires)."""
        size, body = machine.extra["size"], machine.request
        region = str(body.get("region", ""))
        v4 = [] if machine.state == "new" else [
            {"ip_address": machine.address, "netmask": "255.255.240.0", "gateway": "127.0.0.1", "type": "public"}
        ]  # fmt: skip
        image = {"id": 166407044, "name": f"{body['image']} image", "distribution": "Ubuntu",
                 "slug": str(body["image"]), "public": True, "regions": ["nyc2", "tor1"],
                 "created_at": "2024-09-27T15:35:19Z", "min_disk_size": 25, "type": "base", "size_gigabytes": 18.47,
                 "description": "GPU base image", "tags": [], "status": "available"}  # fmt: skip
        droplet: dict[str, Any] = {
            "id": int(machine.id), "name": body["name"], "memory": size["memory"], "vcpus": size["vcpus"],
            "disk": size["disk"], "disk_info": size.get("disk_info", []), "locked": False, "status": machine.state,
            "kernel": None, "created_at": _now(machine.created_at), "features": ["droplet_agent", "private_networking"],
            "backup_ids": [], "next_backup_window": None, "snapshot_ids": [], "image": image,
            "volume_ids": list(body.get("volumes") or []),
            "size": size, "size_slug": size["slug"], "networks": {"v4": v4, "v6": []},
            "region": {"name": REGION_NAMES.get(region, region), "slug": region, "available": True,
                       "features": ["backups", "ipv6", "metadata", "install_agent"], "sizes": [size["slug"]]},
            "tags": list(body.get("tags") or []), "vpc_uuid": "e2fdd15c-6ae6-4c11-8c5d-72dae2ba1ad1",
        }  # fmt: skip
        if "gpu_info" in size:
            droplet["gpu_info"] = size["gpu_info"]
        return droplet

    # --- pages --------------------------------------------------------------------------------
    def _page(self, request: web.Request, key: str, items: list[Any]) -> web.Response:
        per_page = int(request.query.get("per_page", 20))
        page = int(request.query.get("page", 1))
        last = max(1, -(-len(items) // per_page))
        pages: dict[str, str] = {}
        if page < last:
            pages |= {"next": self._link(request, page + 1), "last": self._link(request, last)}
        if page > 1:
            pages |= {"first": self._link(request, 1), "prev": self._link(request, page - 1)}
        chunk = items[(page - 1) * per_page : page * per_page]
        links = {"pages": pages} if pages else {}
        return self.json_response({key: chunk, "links": links, "meta": {"total": len(items)}})

    def _link(self, request: web.Request, page: int) -> str:
        return str(request.url.with_query({**request.query, "page": str(page)}))


def cloud_init(script: str) -> tuple[str | None, int | None]:
    """What the machine's boot script gives the engine: the secret it writes to the engine's env file
    (printf 'NAME=value' >> file) and the host port its `docker run -p HOST:CONTAINER` publishes."""
    env: dict[str, str] = {}
    port = None
    for line in script.splitlines():
        words = shlex.split(line) if line.strip() and not line.startswith("#") else []
        if words[:1] == ["printf"] and ">>" in words and len(words) > 2:
            name, _, value = words[2].partition("=")
            env[name] = value
        if words[:2] == ["docker", "run"] and "-p" in words:
            port = int(words[words.index("-p") + 1].split(":")[0])
    secret = next((env[k] for k in ENGINE_KEYS if k in env), None)
    return secret, port


def _now(at: float | None = None) -> str:
    return datetime.fromtimestamp(at if at is not None else time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
