"""A Vast.ai for tests: the marketplace's asks, the instances rented on them, and the routes the vastai
driver uses, in the shapes of Vast's published description (specs/vastai.json; every request and
answer is checked against it by FakeCloud):

- POST /api/v0/bundles: the search, with Vast's filter operators (eq, neq, gt, gte, lt, lte, in,
  notin) on the asks' fields; `verified`, `datacenter` and `geolocation` (a country code) read the
  host's verification, hosting type and location; type "bid" prices asks at their minimum bid;
- PUT /api/v0/asks/{id}: creates an instance (`new_contract`); an ask someone rented since the search
  answers 404 "no_such_ask" (the description's shape), a bid under the ask's minimum 400 invalid_price;
- GET /api/v1/instances: keyset pagination (`next_token`; at most `page_limit` a page, 25 as Vast),
  `select_filters` on the columns Vast filters (id, label, actual_status, gpu_name, verification);
- DELETE /api/v0/instances/{id}: destroys, taking `terminate_seconds` (the instance stays listed,
  exited, meanwhile); an unknown id is 404;
- PUT /api/v0/instances/request_logs/{id}: uploads the container's log to a storage server of its own
  (another loopback server, as Vast's storage is not its API) and answers its link; the link answers
  404 for the first `log_upload_fetches` reads (the upload takes a moment).

- POST /api/v0/volumes/search, PUT, GET and DELETE /api/v0/volumes: volume offers (a host machine's free
  disk, `add_volume_offer`) searched with the same operators; renting one makes a volume on that machine
  (named by the rent body's `name`, as Vast's CLI sends it, which the listing shows back); the listing is
  one page; delete answers 404 no_such_volume for an unknown id and 400 invalid_args while an instance
  uses it. A create body's `volume_info` mounts a volume only on an ask of the volume's machine.

A machine boots after `boot_seconds` ("loading", then "running"); its engine (the simulator, answering
only the secret the driver put in the container's environment) starts `engine_delay` later on its own
loopback address, on `engine_port`, which Vast reports as the host port of the engine's container port
(every other published container port gets a host port of its own, as Vast maps them).
Tests play the market: `add_ask`, `take` (someone else rents an ask), `outbid` (a higher bid stops our
interruptible), `vanish` (the machine is gone from every list), `add_foreign` (an instance that is not
ours in the same account).
"""

from __future__ import annotations

import base64
import itertools
import json
import shlex
import threading
import time
import uuid
from typing import Any

from aiohttp import web

from fleet.providers.containers import CUSTOM_KEY_ENV
from tests.fakes.clouds.base import FakeCloud, Machine
from tests.fakes.engine_box import AppThread

ANY_ADDRESS = "0.0.0.0"  # noqa: S104 - what Docker reports for a port published on every address
KEY_VARIABLES = ("VLLM_API_KEY", "LLAMA_API_KEY", CUSTOM_KEY_ENV)  # where each engine reads its secret
SEARCH_SETTINGS = frozenset({"limit", "type", "order", "allocated_storage"})
LISTING_FILTERABLE = frozenset({"id", "label", "actual_status", "gpu_name", "verification"})
OPERATORS = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


class VastCloud(FakeCloud):
    spec = "vastai"
    server_url = "https://console.vast.ai"
    api_key = "vast-test-key-5b1e"

    def __init__(self, **knobs: Any) -> None:
        super().__init__(**knobs)
        self.asks: dict[int, dict[str, Any]] = {}
        self.page_limit = 25
        self.log_upload_fetches = 0
        self._ask_ids = itertools.count(4_100_001)
        self._contract_ids = itertools.count(21_000_001)
        self._uploads: dict[str, str] = {}
        self._storage: AppThread | None = None
        self.volume_offers: dict[int, dict[str, Any]] = {}
        self.destroyed: list[str] = []  # instances gone after a destroy was asked for
        self.volumes: dict[int, dict[str, Any]] = {}
        self._volume_ids = itertools.count(31_000_001)
        self._host_ports = itertools.count(41_001)

    # --- the market ---------------------------------------------------------------------------
    def add_ask(
        self, *, gpu_name: str = "H100 SXM", num_gpus: int = 1, gpu_ram: int = 81_559, geolocation: str = "Georgia, US",
        dph_total: float = 2.5, min_bid: float = 1.1, datacenter: bool = True, verified: bool = True,
        reliability: float = 0.995, disk_space: float = 500.0,
    ) -> int:  # fmt: skip
        """One host machine for rent; its id."""
        ask_id = next(self._ask_ids)
        with self.lock:
            self.asks[ask_id] = {
                "id": ask_id, "ask_contract_id": ask_id, "machine_id": ask_id // 10, "host_id": ask_id // 100,
                "gpu_name": gpu_name, "num_gpus": num_gpus, "gpu_ram": gpu_ram, "gpu_total_ram": gpu_ram * num_gpus,
                "geolocation": geolocation, "dph_total": dph_total, "dph_base": round(dph_total * 0.95, 6),
                "min_bid": min_bid, "hosting_type": 1 if datacenter else 0,
                "verification": "verified" if verified else "unverified", "reliability": reliability,
                "reliability2": reliability, "disk_space": disk_space, "rentable": True, "rented": False,
                "is_bid": False, "cuda_max_good": 12.4, "public_ipaddr": "203.0.113.7",
            }  # fmt: skip
        return ask_id

    def add_volume_offer(self, ask_id: int, *, disk_space: float = 400.0, storage_cost: float = 0.15) -> int:
        """Free disk for volumes on the machine of ask `ask_id`; the offer's id."""
        offer_id = next(self._ask_ids)
        with self.lock:
            ask = self.asks[ask_id]
            self.volume_offers[offer_id] = {
                "id": offer_id, "ask_contract_id": offer_id, "machine_id": ask["machine_id"], "host_id": ask["host_id"],
                "geolocation": ask["geolocation"], "disk_space": disk_space, "storage_cost": storage_cost,
                "storage_total_cost": storage_cost, "verification": ask["verification"],
                "reliability2": ask["reliability2"], "static_ip": True, "cuda_max_good": 12.4,
            }  # fmt: skip
        return offer_id

    def take(self, ask_id: int) -> None:
        """Someone else rents the ask (between our search and our create, say)."""
        with self.lock:
            self.asks[ask_id]["rentable"] = False

    def outbid(self, machine_id: str) -> None:
        """A higher bid takes the host: our interruptible is stopped (it stays, exited, until destroyed)."""
        with self.lock:
            machine = self.machines[machine_id]
            assert machine.extra["is_bid"], "only interruptibles are outbid"
            machine.state = "exited"
            machine.extra |= {"intended_status": "stopped", "status_msg": "stopped: outbid by a higher bid"}
        self._log(machine, "container stopped: outbid")
        engine, machine.engine = machine.engine, None
        if engine is not None:
            engine.power_off()

    def add_foreign(self, label: str | None) -> str:
        """An instance of the same account that is not ours (rented by hand, or by another platform)."""
        contract = str(next(self._contract_ids))
        machine = Machine(id=contract, request={"image": "pytorch/pytorch", "label": label}, state="running")
        machine.extra = {"label": label, "is_bid": False, "ask": None, "env": [], "ports": {}, "log": []}
        with self.lock:
            self.machines[contract] = machine
        return contract

    def vanish(self, machine_id: str) -> None:
        with self.lock:
            ask_id = self.machines[machine_id].extra.get("ask")
        super().vanish(machine_id)
        self._free(ask_id)

    # --- server -------------------------------------------------------------------------------
    def start(self, *, port: int = 0) -> VastCloud:
        storage = web.Application()
        storage.router.add_get("/instance_logs/{name}", self._download)
        self._storage = AppThread(storage)
        super().start(port=port)
        return self

    def stop(self) -> None:
        super().stop()
        if self._storage is not None:
            self._storage.power_off()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v0/bundles", self._search)
        app.router.add_put("/api/v0/asks/{id}", self._create)
        app.router.add_get("/api/v1/instances", self._list)
        app.router.add_delete("/api/v0/instances/{id}", self._destroy)
        app.router.add_put("/api/v0/instances/request_logs/{id}", self._request_logs)
        app.router.add_post("/api/v0/volumes/search", self._volume_search)
        app.router.add_put("/api/v0/volumes", self._volume_rent)
        app.router.add_get("/api/v0/volumes", self._volume_list)
        app.router.add_delete("/api/v0/volumes", self._volume_delete)

    def error_body(self, status: int, message: str) -> Any:
        return {"success": False, "error": "auth_error" if status == 401 else "invalid_request", "msg": message}

    # --- search -------------------------------------------------------------------------------
    async def _search(self, request: web.Request) -> web.Response:
        query = await request.json()
        unknown = [k for k, v in query.items() if k not in SEARCH_SETTINGS and not isinstance(v, dict)]
        if unknown:
            return self.json_response({"error": "invalid_request", "msg": f"bad filters {unknown}"}, 400)
        bid = query.get("type") == "bid"
        with self.lock:
            found = [self._priced(ask, bid) for ask in self.asks.values() if self._matches(ask, query, bid)]
        for field, direction in reversed(query.get("order") or []):
            found.sort(key=lambda offer: offer.get(field) or 0, reverse=direction == "desc")
        return self.json_response({"offers": found[: int(query.get("limit") or 64)]})

    def _matches(self, ask: dict[str, Any], query: dict[str, Any], bid: bool) -> bool:
        priced = self._priced(ask, bid)
        for field, condition in query.items():
            if field in SEARCH_SETTINGS:
                continue
            value = self._search_value(priced, field)
            if not all(OPERATORS[op](value, operand) for op, operand in condition.items()):
                return False
        return bool(ask["rentable"])

    @staticmethod
    def _search_value(ask: dict[str, Any], field: str) -> Any:
        if field == "verified":
            return ask["verification"] == "verified"
        if field == "datacenter":
            return ask["hosting_type"] == 1
        if field == "geolocation":  # the search filters locations by country code
            return str(ask["geolocation"]).rpartition(", ")[2]
        return ask.get(field)

    @staticmethod
    def _priced(ask: dict[str, Any], bid: bool) -> dict[str, Any]:
        return {**ask, "dph_total": ask["min_bid"], "is_bid": True} if bid else dict(ask)

    # --- instances ----------------------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        ask_id = int(request.match_info["id"])
        body = await request.json()
        with self.lock:
            ask = self.asks.get(ask_id)
            if ask is None or not ask["rentable"]:
                message = f"error 404/3603: no_such_ask Instance type by id {ask_id} is not available."
                return self._refuse(404, ask_id, "invalid_args", message)
            bid = body.get("price")
            if bid is not None and bid < ask["min_bid"]:
                return self._refuse(400, ask_id, "invalid_price", f"bid {bid} is below the minimum {ask['min_bid']}")
            if float(body.get("disk") or 8) > ask["disk_space"]:
                return self._refuse(400, ask_id, "invalid_args", "not enough disk space on this machine")
            try:
                env, ports = parse_docker_flags(str(body.get("env") or ""))
            except ValueError as exc:
                return self._refuse(400, ask_id, "invalid_args", f"env: {exc}")
            refused = self._mount_refusal(ask, body.get("volume_info"))
            if refused:
                return self._refuse(400, ask_id, "invalid_args", refused)
            ask["rentable"] = False
            machine = self._rent(ask, body, env, ports)
            if body.get("volume_info"):
                self.volumes[body["volume_info"]["volume_id"]]["instances"].append({"id": int(machine.id)})
        return self.json_response({"success": True, "new_contract": int(machine.id)})

    def _mount_refusal(self, ask: dict[str, Any], info: dict[str, Any] | None) -> str | None:
        if not info:
            return None
        if info.get("create_new") is not False:
            return "this test cloud mounts existing volumes only"
        volume = self.volumes.get(info.get("volume_id") or 0)
        if volume is None:
            return f"no volume {info.get('volume_id')}"
        if volume["machine_id"] != ask["machine_id"]:
            return f"volume {volume['id']} lives on machine {volume['machine_id']}, not {ask['machine_id']}"
        if volume["instances"]:
            return f"volume {volume['id']} is in use"
        return None

    def _refuse(self, status: int, ask_id: int, error: str, message: str) -> web.Response:
        return self.json_response({"success": False, "error": error, "msg": message, "ask_id": ask_id}, status)

    def _rent(self, ask: dict[str, Any], body: dict[str, Any], env: list[list[str]], ports: list[int]) -> Machine:
        contract = str(next(self._contract_ids))
        machine = Machine(id=contract, request=body, state="loading", address=self.new_address())
        is_bid = body.get("price") is not None
        engine = next((int(v) for k, v in env if k == "GPUCLOUD_ENGINE_PORT" and v.isdigit()), None)
        # The engine's port (the first one) is where the simulator listens; the others get host ports of their own.
        host_ports = {port: self.engine_port if engine in (port, None) else next(self._host_ports) for port in ports}
        machine.extra = {
            "ask": ask["id"], "label": body.get("label"), "is_bid": is_bid, "env": env,
            "dph_total": body["price"] if is_bid else ask["dph_total"], "intended_status": "running",
            # Vast publishes each exposed container port on a host port of its own choosing.
            "ports": {f"{p}/tcp": [{"HostIp": ANY_ADDRESS, "HostPort": str(host)}] for p, host in host_ports.items()},
            "volume_info": [dict(body["volume_info"])] if body.get("volume_info") else [],
            "log": [f"pulling {body['image']}"],
        }  # fmt: skip
        self.machines[contract] = machine
        _later(self.boot_seconds, self._booted, machine)
        return machine

    def _booted(self, machine: Machine) -> None:
        with self.lock:
            if machine.ended_at is not None or machine.state != "loading":
                return
            machine.state = "running"
        env = dict(pair for pair in machine.extra["env"] if not pair[0].startswith("-"))
        secret = next((env[name] for name in KEY_VARIABLES if env.get(name)), None)
        self._log(machine, f"container started ({machine.request.get('runtype')}): {machine.request['image']}")
        # A container that was not given its secret answers nobody: the platform must fail as in production.
        self.boot(machine, secret or uuid.uuid4().hex, port=self.engine_port)

    async def _list(self, request: web.Request) -> web.Response:
        try:
            filters = json.loads(request.query.get("select_filters", "{}"))
            after = _token_id(request.query.get("after_token"))
        except ValueError:
            return self.json_response({"error": "invalid_token", "msg": "Invalid pagination token."}, 400)
        if set(filters) - LISTING_FILTERABLE:
            return self.json_response({"error": "invalid_request", "msg": f"not filterable: {sorted(filters)}"}, 400)
        limit = min(int(request.query.get("limit", 25)), self.page_limit)
        with self.lock:
            rows = [self._row(m) for m in sorted(self.machines.values(), key=lambda m: int(m.id))]
        rows = [r for r in rows if r["id"] > after and _kept(r, filters)]
        page = rows[:limit]
        more = len(rows) > limit
        return self.json_response({
            "success": True, "instances": page, "instances_found": len(page), "total_instances": len(rows),
            "next_token": _token(page[-1]["id"]) if more else None,
        })  # fmt: skip

    def _row(self, machine: Machine) -> dict[str, Any]:
        extra = machine.extra
        ask = self.asks.get(extra.get("ask") or 0, {})
        row: dict[str, Any] = {
            "id": int(machine.id), "label": extra.get("label"), "actual_status": machine.state,
            "intended_status": extra.get("intended_status", "running"), "cur_state": "running",
            "next_state": "running", "image_uuid": machine.request.get("image", ""),
            "image_runtype": machine.request.get("runtype", "ssh"), "image_args": machine.request.get("args") or [],
            "extra_env": extra.get("env", []), "is_bid": bool(extra.get("is_bid")),
            "dph_total": float(extra.get("dph_total", 0.5)), "start_date": machine.created_at,
            "public_ipaddr": machine.address, "status_msg": extra.get("status_msg"),
            "ports": extra["ports"] if machine.state == "running" else None,
            "gpu_name": ask.get("gpu_name", "RTX 3090"), "num_gpus": ask.get("num_gpus", 1),
            "geolocation": ask.get("geolocation", "Texas, US"), "verification": "verified",
            "disk_space": float(machine.request.get("disk") or 8), "volume_info": extra.get("volume_info", []),
        }  # fmt: skip
        if machine.request.get("onstart"):
            row["onstart"] = machine.request["onstart"]
        return row

    async def _destroy(self, request: web.Request) -> web.Response:
        contract = request.match_info["id"]
        with self.lock:
            machine = self.machines.get(contract)
            if machine is None:
                return self.json_response({"success": False, "error": "not_found", "msg": "Instance not found"}, 404)
            destroying = machine.extra.get("intended_status") == "destroyed"
            machine.state, machine.extra["intended_status"] = "exited", "destroyed"
            for volume in self.volumes.values():  # its container is gone: the volume is free again
                volume["instances"] = [i for i in volume["instances"] if i["id"] != int(contract)]
        if not destroying:
            self.power_off(machine)
            _later(self.terminate_seconds, self._gone, contract)
        return self.json_response({"success": True, "msg": "Instance destroyed successfully"})

    def _gone(self, contract: str) -> None:
        with self.lock:
            machine = self.machines.pop(contract, None)
        if machine is not None:
            self.destroyed.append(contract)
            self._free(machine.extra.get("ask"))

    def _free(self, ask_id: int | None) -> None:
        with self.lock:
            if ask_id in self.asks:
                self.asks[ask_id]["rentable"] = True

    # --- volumes -------------------------------------------------------------------------------
    async def _volume_search(self, request: web.Request) -> web.Response:
        query = await request.json() if request.can_read_body else {}
        with self.lock:
            found = [dict(o) for o in self.volume_offers.values() if self._offer_matches(o, query)]
        for field, direction in reversed(query.get("order") or []):
            found.sort(key=lambda offer: offer.get(field) or 0, reverse=direction == "desc")
        return self.json_response({"offers": found[: int(query.get("limit") or 64)]})

    def _offer_matches(self, offer: dict[str, Any], query: dict[str, Any]) -> bool:
        return all(
            OPERATORS[op](self._search_value(offer, field), operand)
            for field, condition in query.items()
            if field not in SEARCH_SETTINGS and isinstance(condition, dict)
            for op, operand in condition.items()
        )

    async def _volume_rent(self, request: web.Request) -> web.Response:
        body = await request.json()
        size = int(body.get("size") or 15)
        with self.lock:
            offer = self.volume_offers.get(body["id"])
            if offer is None:
                message = f"Volume offer {body['id']} is not available."
                return self.json_response({"success": False, "error": "no_such_ask", "msg": message}, 404)
            if size > offer["disk_space"]:
                return self.json_response({"success": False, "error": "invalid_args", "msg": "not enough space"}, 400)
            offer["disk_space"] -= size
            volume_id = next(self._volume_ids)
            self.volumes[volume_id] = {
                "id": volume_id, "name": body.get("name"), "machine_id": offer["machine_id"],
                "host_id": offer["host_id"], "disk_space": float(size), "status": "running", "instances": [],
                "start_date": time.time(), "verification": offer["verification"], "offer": offer["id"],
            }  # fmt: skip
        return self.json_response({"success": True, "volume_name": f"V.{volume_id}"})

    async def _volume_list(self, request: web.Request) -> web.Response:
        with self.lock:
            rows = [self.volume_row(v) for v in sorted(self.volumes)]
        return self.json_response({"volumes": rows})

    def volume_row(self, volume_id: int) -> dict[str, Any]:
        with self.lock:
            volume = self.volumes[volume_id]
            return {k: v for k, v in volume.items() if k != "offer"} | {"instances": list(volume["instances"])}

    async def _volume_delete(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            volume = self.volumes.get(body["id"])
            if volume is None:
                message = "Volume with that ID does not exist."
                return self.json_response({"success": False, "error": "no_such_volume", "msg": message}, 404)
            if volume["instances"]:
                message = f"Volume {volume['id']} is in use by an instance."
                return self.json_response({"success": False, "error": "invalid_args", "msg": message}, 400)
            del self.volumes[volume["id"]]
            self.volume_offers[volume["offer"]]["disk_space"] += volume["disk_space"]
        return self.json_response({"success": True})

    # --- logs -----------------------------------------------------------------------------------
    async def _request_logs(self, request: web.Request) -> web.Response:
        contract = request.match_info["id"]
        body = await request.json() if request.can_read_body else {}
        with self.lock:
            machine = self.machines.get(contract)
            if machine is None:
                return self.json_response({"error": "invalid_id", "msg": "Invalid instance id."}, 404)
            tail = int(body.get("tail") or 1000)
            name = f"{uuid.uuid4().hex}.log"
            self._uploads[name] = "".join(f"{line}\n" for line in machine.extra["log"][-tail:])
        assert self._storage is not None
        url = f"{self._storage.url}/instance_logs/{name}"
        return self.json_response({"success": True, "result_url": url, "msg": "Logs will be uploaded shortly."})

    async def _download(self, request: web.Request) -> web.Response:
        with self.lock:
            if self.log_upload_fetches > 0:
                self.log_upload_fetches -= 1
                return web.Response(status=404, text="NoSuchKey")
            text = self._uploads.get(request.match_info["name"])
        return web.Response(status=404, text="NoSuchKey") if text is None else web.Response(text=text)

    def log(self, machine_id: str, line: str) -> None:
        """The container writes a line."""
        self._log(self.machines[machine_id], line)

    def _log(self, machine: Machine, line: str) -> None:
        with self.lock:
            machine.extra.setdefault("log", []).append(line)

    # --- for tests ------------------------------------------------------------------------------
    def instance(self, machine_id: str) -> dict[str, Any]:
        """The instance as the listing shows it."""
        with self.lock:
            return self._row(self.machines[machine_id])

    def env_of(self, machine_id: str) -> dict[str, str]:
        with self.lock:
            return {k: v for k, v in self.machines[machine_id].extra["env"] if not k.startswith("-")}

    def wait_running(self, machine_id: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                machine = self.machines[machine_id]
                if machine.state == "running" and machine.engine is not None:
                    return
            time.sleep(0.02)
        raise AssertionError(f"instance {machine_id} did not come up")


def _later(seconds: float, step: Any, argument: Any) -> None:
    """`step(argument)` on its own clock, in a daemon thread: a test cloud stopping never waits on it."""
    timer = threading.Timer(seconds, step, (argument,))
    timer.daemon = True
    timer.start()


def parse_docker_flags(env: str) -> tuple[list[list[str]], list[int]]:
    """Vast's env string ("-e NAME=value -p 8000:8000") as the listing's `extra_env` pairs (a variable
    is [name, value], a port flag ["-p 8000:8000", "1"]) and the container ports to publish."""
    words = shlex.split(env)
    pairs: list[list[str]] = []
    ports: list[int] = []
    while words:
        flag = words.pop(0)
        if flag not in ("-e", "-p") or not words:
            raise ValueError(f"unexpected {flag!r}")
        value = words.pop(0)
        if flag == "-e":
            name, equals, content = value.partition("=")
            if not equals or not name:
                raise ValueError(f"-e needs NAME=value, not {value!r}")
            pairs.append([name, content])
        else:
            host, _, container = value.partition(":")
            ports.append(int(container or host))
            pairs.append([f"-p {value}", "1"])
    return pairs, ports


def _kept(row: dict[str, Any], filters: dict[str, Any]) -> bool:
    return all(
        OPERATORS[op](row.get(column), operand) for column, ops in filters.items() for op, operand in ops.items()
    )


def _token(last_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"values": {"id": last_id}}).encode()).decode()


def _token_id(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["values"]["id"])
    except (KeyError, TypeError, ValueError) as exc:  # ValueError: bad base64, bad UTF-8, bad JSON
        raise ValueError("invalid token") from exc
