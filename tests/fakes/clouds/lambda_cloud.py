"""A Lambda Cloud for tests: the part of Cloud API 1.10 the Lambda driver uses, with state, in Lambda's
shapes (every request and answer is checked against specs/lambda.json by FakeCloud).

What it keeps: instance types with a capacity per region (`types`), instances (`machines`, each with its
Lambda status in `state`), firewall rulesets and SSH keys. What it plays, beyond FakeCloud's faults:
- a launch it has no capacity for: 400 `instance-operations/launch/insufficient-capacity`, Lambda's shape;
- a VM booting (`booting`, no public IP) for `boot_seconds`, then `active` with its own loopback address,
  its engine started from the user data's own script: the engine simulator answers the secret the script
  writes into the container's environment (VLLM_API_KEY, LLAMA_API_KEY or GPUCLOUD_ENGINE_API_KEY) on the
  port the script publishes (`docker run -p <port>:...`), after `engine_delay` more seconds;
- Lambda's firewall: the engine is started only if a ruleset attached at launch admits the platform's
  address (`platform_address`, 127.0.0.1) on that port; without one, Lambda's default (SSH only) applies
  and nothing reaches the engine, as on Lambda;
- a termination that is accepted (the instance shows `terminating`, its engine stops) and takes
  `terminate_seconds` before the instance is gone from every answer (404);
- a launch whose answer comes `launch_answer_delay` seconds after the VM was made (an answer a driver's
  timeout loses), and `vanish` (the VM is taken away: preemption, host failure).

- filesystems (`filesystems`): created per region by name (a second of the same name: 400 `global/duplicate`),
  listed in one answer, attached at launch by name (`file_system_names`: one in another region is Lambda's
  400 `file-system-in-wrong-region`, one it does not have a 404) and mounted at /lambda/nfs/<name>; a delete
  while a VM that is not gone (a terminating one too) mounts it: 400 `filesystems/filesystem-in-use`.

Lambda's listInstances and listFilesystems have no pagination in 1.10: everything is in one answer.

To try the platform against it by hand: `python -m tests.fakes.clouds.serve lambda` (serve.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.clouds.base import FakeCloud, Machine

ENGINE_KEY_VARIABLES = ("VLLM_API_KEY", "LLAMA_API_KEY", "GPUCLOUD_ENGINE_API_KEY")
ENV_LINE_PREFIX = "printf '%s\\n' "
REGION_DESCRIPTIONS = {"us-east-1": "Virginia, USA", "us-west-1": "California, USA", "us-south-2": "Texas, USA"}
# Lambda's default firewall, for VMs launched without a ruleset: SSH from anywhere, nothing else (ICMP aside).
DEFAULT_RULES: list[dict[str, Any]] = [
    {"protocol": "tcp", "port_range": [22, 22], "source_network": "0.0.0.0/0", "description": "SSH"}
]
ERROR_CODES = {
    400: "global/invalid-parameters",
    401: "global/invalid-api-key",
    403: "global/account-inactive",
    404: "global/object-does-not-exist",
    409: "global/internal-error",
    429: "global/too-many-requests",
}
NO_CAPACITY = "instance-operations/launch/insufficient-capacity"


@dataclass
class InstanceType:
    name: str
    price_cents: int
    gpus: int
    gpu_description: str
    capacity: dict[str, int] = field(default_factory=dict)  # region name -> how many may run at once

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": f"{self.gpus}x {self.gpu_description}" if self.gpus else "CPU only",
            "gpu_description": self.gpu_description,
            "price_cents_per_hour": self.price_cents,
            "specs": {"vcpus": 26 * max(self.gpus, 1), "memory_gib": 225 * max(self.gpus, 1),
                      "storage_gib": 2750, "gpus": self.gpus},
        }  # fmt: skip


def default_types() -> list[InstanceType]:
    """A catalog like Lambda's: two H100 types (one offer), an 8x machine, a type with no capacity
    anywhere, a GPU nobody maps, and a CPU type."""
    return [
        InstanceType("gpu_1x_h100_pcie", 249, 1, "H100 (80 GB PCIe)", {"us-east-1": 2, "us-west-1": 1}),
        InstanceType("gpu_1x_h100_sxm5", 329, 1, "H100 (80 GB SXM5)", {"us-east-1": 1}),
        InstanceType("gpu_8x_h100_sxm5", 2392, 8, "H100 (80 GB SXM5)", {"us-south-2": 1}),
        InstanceType("gpu_8x_a100_80gb_sxm4", 1432, 8, "A100 (80 GB SXM4)", {"us-east-1": 0}),
        InstanceType("gpu_1x_a10", 75, 1, "A10 (24 GB PCIe)", {"us-west-1": 3}),
        InstanceType("cpu_4x_general", 12, 0, "", {"us-east-1": 5}),
    ]


class LambdaCloud(FakeCloud):
    spec = "lambda"
    server_url = "https://cloud.lambda.ai/"
    platform_address = "127.0.0.1"  # where the tests' gateway and health checks come from

    def __init__(self, *, types: list[InstanceType] | None = None, launch_answer_delay: float = 0.0,
                 **knobs: float) -> None:  # fmt: skip
        super().__init__(**knobs)
        self.types = {t.name: t for t in types or default_types()}
        self.launch_answer_delay = launch_answer_delay
        self.rulesets: dict[str, dict[str, Any]] = {}
        self.ssh_keys: dict[str, dict[str, Any]] = {}
        self.filesystems: dict[str, dict[str, Any]] = {}  # id -> Lambda's Filesystem
        self.gone: dict[str, float] = {}  # instance id -> when it disappeared (terminated or vanished)
        self.terminated: list[str] = []  # instances gone after a termination was asked for
        self._timers: list[threading.Timer] = []

    # --- routes -------------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/instance-types", self._instance_types)
        app.router.add_get("/api/v1/instances", self._instances)
        app.router.add_get("/api/v1/instances/{id}", self._instance)
        app.router.add_post("/api/v1/instance-operations/launch", self._launch)
        app.router.add_post("/api/v1/instance-operations/terminate", self._terminate)
        app.router.add_get("/api/v1/firewall-rulesets", self._rulesets)
        app.router.add_post("/api/v1/firewall-rulesets", self._ruleset_create)
        app.router.add_get("/api/v1/firewall-rulesets/{id}", self._ruleset)
        app.router.add_patch("/api/v1/firewall-rulesets/{id}", self._ruleset_update)
        app.router.add_delete("/api/v1/firewall-rulesets/{id}", self._ruleset_delete)
        app.router.add_get("/api/v1/ssh-keys", self._keys)
        app.router.add_post("/api/v1/ssh-keys", self._key_create)
        app.router.add_get("/api/v1/file-systems", self._filesystems)
        app.router.add_post("/api/v1/filesystems", self._filesystem_create)
        app.router.add_delete("/api/v1/filesystems/{id}", self._filesystem_delete)

    def error_body(self, status: int, message: str, code: str = "") -> Any:
        error = {"code": code or ERROR_CODES.get(status, "global/internal-error"), "message": message,
                 "suggestion": "Check the request and try again."}  # fmt: skip
        return {"error": error}

    def refuse(self, status: int, message: str, code: str = "") -> web.Response:
        return web.json_response(self.error_body(status, message, code), status=status)

    # --- instance types -----------------------------------------------------------------------
    async def _instance_types(self, request: web.Request) -> web.Response:
        with self.lock:
            data = {
                name: {"instance_type": t.as_json(),
                       "regions_with_capacity_available": [_region(r) for r in self._regions_with_room(t)]}
                for name, t in self.types.items()
            }  # fmt: skip
        return self.json_response({"data": data})

    def _regions_with_room(self, instance_type: InstanceType) -> list[str]:
        return [r for r, n in sorted(instance_type.capacity.items()) if self._used(instance_type.name, r) < n]

    def _used(self, type_name: str, region: str) -> int:
        return sum(m.extra["type"] == type_name and m.extra["region"] == region for m in self.machines.values())

    # --- instances ----------------------------------------------------------------------------
    async def _instances(self, request: web.Request) -> web.Response:
        with self.lock:
            data = [self.instance_json(m) for m in self.machines.values()]
        return self.json_response({"data": data})

    async def _instance(self, request: web.Request) -> web.Response:
        with self.lock:
            machine = self.machines.get(request.match_info["id"])
            if machine is None:
                return self.refuse(404, "Specified instance does not exist.")
            return self.json_response({"data": self.instance_json(machine)})

    def instance_json(self, machine: Machine) -> dict[str, Any]:
        body = machine.request
        instance_type = self.types[machine.extra["type"]]
        data: dict[str, Any] = {
            "id": machine.id,
            "name": body.get("name", ""),
            "status": machine.state,
            "ssh_key_names": list(body["ssh_key_names"]),
            "file_system_names": list(body.get("file_system_names", [])),
            "region": _region(machine.extra["region"]),
            "instance_type": instance_type.as_json(),
            "actions": _actions(machine),
            "tags": [dict(t) for t in body.get("tags", [])],
            "firewall_rulesets": [dict(r) for r in body.get("firewall_rulesets", [])],
        }
        if body.get("file_system_names"):
            named = {f["name"]: f for f in self.filesystems.values()}
            data["file_system_mounts"] = [{"mount_point": named[n]["mount_point"], "file_system_id": named[n]["id"]}
                                          for n in body["file_system_names"] if n in named]  # fmt: skip
        if machine.state != "booting":  # Lambda assigns the public address once the VM has launched
            data |= {"ip": machine.address, "private_ip": f"10.0.{machine.address.split('.')[-1]}.2",
                     "hostname": f"{machine.address.replace('.', '-')}.cloud.lambda.test"}  # fmt: skip
        return data

    async def _launch(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self.lock:
            refusal = self._launch_refusal(body)
            if refusal is not None:
                return refusal
            machine = Machine(id=uuid.uuid4().hex, request=body, state="booting", address=self.new_address(),
                              extra={"type": body["instance_type_name"], "region": body["region_name"]})  # fmt: skip
            self.machines[machine.id] = machine
        self._after(self.boot_seconds, self._activate, machine)
        if self.launch_answer_delay:
            await asyncio.sleep(self.launch_answer_delay)
        return self.json_response({"data": {"instance_ids": [machine.id]}})

    def _launch_refusal(self, body: dict[str, Any]) -> web.Response | None:
        instance_type = self.types.get(body["instance_type_name"])
        region = body["region_name"]
        if instance_type is None:
            return self.refuse(404, f"Instance type {body['instance_type_name']} does not exist.")
        if region not in instance_type.capacity:
            return self.refuse(400, f"{instance_type.name} is not offered in {region}.")
        if len(body["ssh_key_names"]) != 1:
            return self.refuse(400, "Exactly one SSH key must be specified.")
        if body["ssh_key_names"][0] not in {k["name"] for k in self.ssh_keys.values()}:
            return self.refuse(404, f"SSH key {body['ssh_key_names'][0]} does not exist.")
        for entry in body.get("firewall_rulesets", []):
            ruleset = self.rulesets.get(entry["id"])
            if ruleset is None:
                return self.refuse(404, f"Firewall ruleset {entry['id']} does not exist.")
            if ruleset["region"] != region:
                return self.refuse(400, "Firewall rulesets must be in the instance's region.")
        named = {f["name"]: f for f in self.filesystems.values()}
        for name in body.get("file_system_names", []):
            if name not in named:
                return self.refuse(404, f"Filesystem {name} does not exist.")
            if named[name]["region"]["name"] != region:
                return self.refuse(400, f"Filesystem {name} is not in {region}.",
                                   "instance-operations/launch/file-system-in-wrong-region")  # fmt: skip
        if self._used(instance_type.name, region) >= instance_type.capacity[region]:
            return self.refuse(400, "Not enough capacity to fulfill launch request.", NO_CAPACITY)
        return None

    def _activate(self, machine: Machine) -> None:
        """The VM has booted: cloud-init runs the user data, which starts the engine (if it can be reached)."""
        with self.lock:
            if machine.state != "booting" or machine.id not in self.machines:
                return
            machine.state = "active"
        script = machine.request.get("user_data") or ""
        env, port = engine_env(script), published_port(script)
        key = next((env[v] for v in ENGINE_KEY_VARIABLES if v in env), None)
        machine.extra |= {"env": env, "port": port}
        if key is None or port is None:
            machine.extra["boot_error"] = "the user data starts no engine with a secret"
            return
        if not self.admits(machine, port):
            machine.extra["firewalled"] = True
            return
        self.boot(machine, key, port=port)

    def admits(self, machine: Machine, port: int) -> bool:
        """Whether Lambda's firewall lets the platform reach `port` of the VM: a rule of an attached
        ruleset (none attached: Lambda's default, SSH only) admitting the platform's address."""
        with self.lock:
            attached = [self.rulesets[r["id"]] for r in machine.request.get("firewall_rulesets", [])
                        if r["id"] in self.rulesets]  # fmt: skip
        rules = [rule for ruleset in attached for rule in ruleset["rules"]] if attached else DEFAULT_RULES
        source = ipaddress.ip_address(self.platform_address)
        return any(
            rule["protocol"] in ("tcp", "all")
            and (rule["protocol"] == "all" or rule["port_range"][0] <= port <= rule["port_range"][1])
            and source in ipaddress.ip_network(rule["source_network"], strict=False)
            for rule in rules
        )

    async def _terminate(self, request: web.Request) -> web.Response:
        ids = (await request.json())["instance_ids"]
        with self.lock:
            machines = [self.machines.get(i) for i in ids]
            if any(m is None for m in machines):
                return self.refuse(404, "Specified instance does not exist.")
            for machine in machines:
                assert machine is not None
                action = _actions(machine)["terminate"]
                if not action["available"]:
                    return self.refuse(400, f"Cannot terminate {machine.id}: {action['reason_description']}.")
            for machine in machines:
                assert machine is not None
                machine.state = "terminating"
            data = [self.instance_json(m) for m in machines if m is not None]
        for machine in machines:
            assert machine is not None
            self._stop_engine(machine)
            self._after(self.terminate_seconds, self._remove, machine)
        return self.json_response({"data": {"terminated_instances": data}})

    def _remove(self, machine: Machine) -> None:
        with self.lock:
            if self.machines.pop(machine.id, None) is not None:
                self.gone[machine.id] = time.time()
                self.terminated.append(machine.id)
        self.power_off(machine)

    def vanish(self, machine_id: str) -> None:
        with self.lock:
            self.gone[machine_id] = time.time()
        super().vanish(machine_id)

    def _stop_engine(self, machine: Machine) -> None:
        with self.lock:
            engine, machine.engine = machine.engine, None
        if engine is not None:
            engine.power_off()

    def _after(self, seconds: float, action: Any, machine: Machine) -> None:
        """Run `action(machine)` now (0 s) or on its own clock."""
        if seconds <= 0:
            action(machine)
            return
        timer = threading.Timer(seconds, action, (machine,))
        timer.daemon = True
        with self.lock:
            self._timers.append(timer)
        timer.start()

    def stop(self) -> None:
        with self.lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        super().stop()

    # --- firewall rulesets --------------------------------------------------------------------
    async def _rulesets(self, request: web.Request) -> web.Response:
        with self.lock:
            return self.json_response({"data": [self.ruleset_json(r) for r in self.rulesets.values()]})

    async def _ruleset(self, request: web.Request) -> web.Response:
        with self.lock:
            ruleset = self.rulesets.get(request.match_info["id"])
            if ruleset is None:
                return self.refuse(404, "Firewall ruleset does not exist or you do not have permission to access it.")
            return self.json_response({"data": self.ruleset_json(ruleset)})

    async def _ruleset_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        problem = _rules_problem(body["rules"])
        if problem or body["region"] not in REGION_DESCRIPTIONS:
            return self.refuse(400, problem or f"Unknown region {body['region']}.")
        ruleset = {"id": uuid.uuid4().hex, "name": body["name"], "region": body["region"], "rules": body["rules"],
                   "created": datetime.now(tz=UTC).isoformat()}  # fmt: skip
        with self.lock:
            self.rulesets[ruleset["id"]] = ruleset
            return self.json_response({"data": self.ruleset_json(ruleset)})

    async def _ruleset_update(self, request: web.Request) -> web.Response:
        body = await request.json()
        problem = _rules_problem(body.get("rules", []))
        if problem:
            return self.refuse(400, problem)
        with self.lock:
            ruleset = self.rulesets.get(request.match_info["id"])
            if ruleset is None:
                return self.refuse(404, "Firewall ruleset does not exist or you do not have permission to access it.")
            ruleset |= {k: body[k] for k in ("name", "rules") if k in body}
            return self.json_response({"data": self.ruleset_json(ruleset)})

    async def _ruleset_delete(self, request: web.Request) -> web.Response:
        with self.lock:
            ruleset = self.rulesets.get(request.match_info["id"])
            if ruleset is None:
                return self.refuse(404, "Firewall ruleset does not exist or you do not have permission to access it.")
            if self.ruleset_json(ruleset)["instance_ids"]:
                return self.refuse(400, "Firewall ruleset is in use by one or more instances.",
                                   "firewall-rulesets/firewall-ruleset-in-use")  # fmt: skip
            del self.rulesets[ruleset["id"]]
        return self.json_response({"data": {}})

    def ruleset_json(self, ruleset: dict[str, Any]) -> dict[str, Any]:
        users = [m.id for m in self.machines.values()
                 if any(r["id"] == ruleset["id"] for r in m.request.get("firewall_rulesets", []))]  # fmt: skip
        return {**ruleset, "region": _region(ruleset["region"]), "instance_ids": users}

    # --- SSH keys -----------------------------------------------------------------------------
    async def _keys(self, request: web.Request) -> web.Response:
        with self.lock:
            return self.json_response({"data": [dict(k) for k in self.ssh_keys.values()]})

    async def _key_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        public = body.get("public_key") or f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{uuid.uuid4().hex}"
        key = {"id": uuid.uuid4().hex, "name": body["name"], "public_key": public}
        with self.lock:
            self.ssh_keys[key["id"]] = key
        if "public_key" in body:
            return self.json_response({"data": key})
        private = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
        return self.json_response({"data": {**key, "private_key": private}})

    # --- filesystems ----------------------------------------------------------------------------
    async def _filesystems(self, request: web.Request) -> web.Response:
        with self.lock:
            return self.json_response({"data": [self.filesystem_json(f) for f in self.filesystems.values()]})

    async def _filesystem_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body["region"] not in REGION_DESCRIPTIONS:
            return self.refuse(400, f"Unknown region {body['region']}.")
        with self.lock:
            if any(f["name"] == body["name"] for f in self.filesystems.values()):
                return self.refuse(400, f"A filesystem named {body['name']} already exists.", "global/duplicate")
            made = {"id": uuid.uuid4().hex, "name": body["name"], "mount_point": f"/lambda/nfs/{body['name']}",
                    "created": datetime.now(tz=UTC).isoformat(), "region": _region(body["region"]),
                    "created_by": {"id": uuid.uuid4().hex, "email": "ops@example.com", "status": "active"},
                    "bytes_used": 0}  # fmt: skip
            self.filesystems[made["id"]] = made
            return self.json_response({"data": self.filesystem_json(made)})

    async def _filesystem_delete(self, request: web.Request) -> web.Response:
        with self.lock:
            found = self.filesystems.get(request.match_info["id"])
            if found is None:
                return self.refuse(404, "Filesystem was not found.")
            if self.filesystem_json(found)["is_in_use"]:
                return self.refuse(400, f"Filesystem {found['name']} is mounted on an instance.",
                                   "filesystems/filesystem-in-use")  # fmt: skip
            del self.filesystems[found["id"]]
        return self.json_response({"data": {"deleted_ids": [found["id"]]}})

    def filesystem_json(self, filesystem: dict[str, Any]) -> dict[str, Any]:
        """Lambda's Filesystem; in use while any instance it still has (terminating ones too) mounts it."""
        in_use = any(filesystem["name"] in m.request.get("file_system_names", []) for m in self.machines.values())
        return {**filesystem, "is_in_use": in_use}

    # --- for tests ----------------------------------------------------------------------------
    def tagged(self, tag: str) -> list[Machine]:
        """The instances the cloud still has (billing) that carry the fleet tag `tag`."""
        with self.lock:
            return [m for m in self.machines.values()
                    if {"key": "gpucloud-tag", "value": tag} in m.request.get("tags", [])]  # fmt: skip


def engine_env(script: str) -> dict[str, str]:
    """The container environment a boot script (fleet/providers/cloud/boot.py) writes to its env file."""
    env = {}
    for line in script.splitlines():
        if line.startswith(ENV_LINE_PREFIX):
            name, _, value = shlex.split(line)[2].partition("=")
            env[name] = value
    return env


def published_port(script: str) -> int | None:
    """The host port the script's first `docker run -p <host>:<container>` publishes (the engine's)."""
    for line in script.splitlines():
        words = shlex.split(line)
        if words[:2] == ["docker", "run"] and "-p" in words:
            return int(words[words.index("-p") + 1].split(":")[0])
    return None


def publications(script: str) -> list[str]:
    """Every `-p` and `-v` of the script's `docker run`, in order ("8000:8888", "/lambda/nfs/x:/workspace")."""
    for line in script.splitlines():
        words = shlex.split(line)
        if words[:2] == ["docker", "run"]:
            return [words[i + 1] for i, word in enumerate(words) if word in ("-p", "-v")]
    return []


def _region(name: str) -> dict[str, str]:
    return {"name": name, "description": REGION_DESCRIPTIONS.get(name, name)}


def _actions(machine: Machine) -> dict[str, Any]:
    """What Lambda lets one do with the instance now."""

    def unavailable(code: str, why: str) -> dict[str, Any]:
        return {"available": False, "reason_code": code, "reason_description": why}

    if machine.state == "terminating":
        blocked = unavailable("vm-is-terminating", "The instance is terminating")
        return dict.fromkeys(("migrate", "rebuild", "restart", "cold_reboot", "terminate"), blocked)
    others = (unavailable("vm-has-not-launched", "The instance has not launched yet")
              if machine.state == "booting" else {"available": True})  # fmt: skip
    terminate = machine.extra.get("terminate_blocked")
    return {
        **dict.fromkeys(("migrate", "rebuild", "restart", "cold_reboot"), others),
        "terminate": unavailable("vm-action-in-progress", terminate) if terminate else {"available": True},
    }


def _rules_problem(rules: list[dict[str, Any]]) -> str:
    """Lambda's rule checks: a port range for tcp/udp/all, none for icmp, an IPv4 source network."""
    for rule in rules:
        if (rule["protocol"] == "icmp") == ("port_range" in rule):
            return "port_range is required for tcp, udp and all, and not allowed for icmp."
        try:
            ipaddress.IPv4Network(rule["source_network"], strict=False)
        except ValueError:
            return f"source_network {rule['source_network']!r} is not an IPv4 network."
    return ""
