"""The local driver: each instance is an engine process on this machine (see engine.py).

Processes are found through /proc by the tag and instance id on their command line, so a
restarted platform (or a worker that died mid-launch) sees exactly what runs. Engines start in
their own session: a worker's death does not take them down; the reconciler adopts or reaps.

An engine's end is written by its witness (witness.py), a small process started beside it that
learns of the end from the kernel, whoever ended it. Where no witness wrote one (the machine went
down with both), the end is when the platform first saw the engine gone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from catalog.data import SMOLLM2_GGUF
from fleet.providers.base import (
    Driver,
    InstanceSpec,
    InstanceState,
    Offer,
    ProviderError,
    ProviderInstance,
    ProviderVolume,
    Tier,
    VolumeSpec,
)
from fleet.providers.containers import CUSTOM_KEY_ENV
from fleet.providers.local.pod import ACTIVITY_FILE, RESTARTS_FILE
from fleet.providers.local.sandbox import bwrap_path
from fleet.providers.local.volumes import LocalVolumes

ENGINE_MODULE = "fleet.providers.local.engine"
POD_MODULE = "fleet.providers.local.pod"
WITNESS_MODULE = "fleet.providers.local.witness"
ENDED_FILE = "ended_at"  # written by the witness when the engine exits
SEEN_GONE_FILE = "seen_gone_at"  # written by the first look that found the engine gone without one
WITNESS_WAIT_SECONDS = 2.0  # it writes within milliseconds of the end; this bounds a busy machine
# Engines started before the fleet package existed run this module: still ours to list and stop.
ENGINE_MODULES = (ENGINE_MODULE, "catalog.providers.local.engine", POD_MODULE)
# The images a local pod can run: there is no container runtime here, so an "image" is a command this
# machine can run in its sandbox (sandbox.py), with the platform's Python and its packages or a virtual
# environment of its own under images_dir (make builds them). The command a pod gives replaces the default.
# JupyterLab under the platform's proxy (its prefix), in the pod's working directory. Its token is the pod's
# JUPYTER_TOKEN, which Jupyter reads from its environment: on its command line `ps` would show it to anyone.
JUPYTERLAB = (
    'exec "$GPUCLOUD_IMAGES/jupyterlab/bin/jupyter" lab --ip=127.0.0.1 --port="$PORT_8888" --no-browser '
    '--ServerApp.base_url="${GPUCLOUD_PROXY_PATH}8888/" --ServerApp.root_dir="$PWD" '
    "--ServerApp.allow_origin='*'"
)
LLAMA_CPP = (  # llama.cpp's OpenAI server (the local engine) on SmolLM2, under the proxy's prefix, for LLAMA_API_KEY
    'GPUCLOUD_ENGINE_API_KEY="$LLAMA_API_KEY" exec python3 "$GPUCLOUD_ENGINE_SCRIPT" --instance-id "$GPUCLOUD_POD_ID" '
    '--tag pod --port "$PORT_8080" --model-path "$GPUCLOUD_LLAMA_MODEL" --alias smollm2-135m-instruct '
    '--api-prefix "${GPUCLOUD_PROXY_PATH}8080"'
)
LOCAL_IMAGES: dict[str, list[str]] = {
    "gpucloud/shell": ["sleep", "infinity"],  # a Python shell machine: reached over SSH, or runs your command
    "gpucloud/jupyterlab": ["bash", "-c", JUPYTERLAB],  # JupyterLab on 8888 (its token: JUPYTER_TOKEN)
    "gpucloud/llama-cpp": ["bash", "-c", LLAMA_CPP],  # SmolLM2 behind llama.cpp's OpenAI server on 8080
}
PROJECT_ROOT = Path(__file__).resolve().parents[3]
# A stop sends SIGTERM and waits this long before it SIGKILLs the engine's process group: an engine
# leaves within about a second of SIGTERM (engine.py), so this bounds a wedged one.
STOP_GRACE_SECONDS = 3.0
COMMAND_LINE_WAIT_SECONDS = 10.0
FOLLOW_POLL_SECONDS = 0.2


class LocalDriver(Driver):
    """Config: slots (how many engines and pods at once), price_per_hour_micros, instances_dir,
    volumes_dir, threads, ssh_host (where pods' SSH servers listen and users reach them: 127.0.0.1, so
    only this machine's users, unless the operator opens it), and tag: the platform's fleet tag; slots
    count that platform's engines and pods (all of them when unset)."""

    holds_volumes = True
    ssh_user = "pod"

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {
            "slots": settings.GPUCLOUD_LOCAL_SLOTS,
            "price_per_hour_micros": settings.GPUCLOUD_LOCAL_PRICE_MICROS,
            "instances_dir": str(settings.VAR_DIR / "instances"),
            "volumes_dir": str(settings.VAR_DIR / "volumes"),
            "threads": settings.GPUCLOUD_LOCAL_THREADS,
            "tag": settings.GPUCLOUD_FLEET_TAG,
        }

    @property
    def slots(self) -> int:
        return int(self.config.get("slots", 2))

    @property
    def instances_dir(self) -> Path:
        return Path(self.config["instances_dir"])

    # --- offers ---------------------------------------------------------------------------
    def offers(self) -> list[Offer]:
        free = max(0, self.slots - len(_engine_processes(tag=self.config.get("tag"))))
        return [
            Offer(
                provider=self.slug,
                gpu_type="cpu",
                gpu_count=1,
                region="local",
                tier=Tier.SECURE,
                spot=False,
                price_per_hour_micros=int(self.config.get("price_per_hour_micros", 50_000)),
                cost_per_hour_micros=0,
                available=free,
            )
        ]

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def images_dir(self) -> Path:
        return Path(self.config.get("images_dir") or settings.GPUCLOUD_LOCAL_IMAGES_DIR)

    def image_refusal(self, image: str) -> str | None:
        if image == "gpucloud/jupyterlab" and not (self.images_dir / "jupyterlab" / "bin" / "jupyter").exists():
            return f"JupyterLab is not installed on this machine (make builds it in {self.images_dir / 'jupyterlab'})."
        if image in LOCAL_IMAGES:
            return None
        return (
            f"The local provider has no container runtime: it runs {', '.join(sorted(LOCAL_IMAGES))} only, "
            f"not {image!r}. Choose a GPU cloud or a Kubernetes cluster for other images."
        )

    def ports_refusal(self, ports: list[str]) -> str | None:
        if "22/tcp" in ports and bwrap_path() is None:  # the SSH server serves shells in the sandbox only
            return (
                "SSH on the local provider needs bubblewrap for its sandbox (apt-get install bubblewrap); "
                "leave out 22/tcp, or ask the operator."
            )
        return None

    def launch(self, spec: InstanceSpec, offer: Offer) -> ProviderInstance:
        meta = self._meta(spec.instance_id)
        if meta.get("pid") and _alive(int(meta["pid"])):  # launched before (a retried task)
            return self._recorded(spec.instance_id, meta)
        if spec.instance_id in {p.instance_id for p in _engine_processes(tag=None)}:
            return self.status(spec.instance_id)
        running = _engine_processes(tag=self.config.get("tag"))
        if spec.engine == "container":
            if len(running) >= self.slots:
                raise ProviderError(f"All {self.slots} local slots are in use.", no_capacity=True)
            return self._pod_launch(spec)
        if spec.engine != "llama.cpp":
            raise ProviderError(
                f"The local provider runs llama.cpp GGUF models only, not {spec.engine!r}.", permanent=True
            )
        if len(running) >= self.slots:
            raise ProviderError(f"All {self.slots} local engine slots are in use.", no_capacity=True)
        model_path = _gguf_path(spec.model)
        port = _free_port()
        workdir = self.instances_dir / spec.instance_id
        workdir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", ENGINE_MODULE,
            "--instance-id", spec.instance_id, "--tag", spec.tag, "--port", str(port),
            "--model-path", str(model_path), "--alias", spec.served_model_name,
            "--ctx-size", str(spec.engine_args.get("ctx_size", 2048)),
        ]  # fmt: skip
        if self.config.get("threads"):
            command += ["--threads", str(self.config["threads"])]
        if spec.engine_args.get("embedding"):
            command.append("--embedding")
        env = {**os.environ, **spec.env, "GPUCLOUD_ENGINE_API_KEY": spec.api_key, "PYTHONUNBUFFERED": "1"}
        for stale in (ENDED_FILE, SEEN_GONE_FILE):  # from an engine this instance ran before (a relaunch)
            (workdir / stale).unlink(missing_ok=True)
        with (workdir / "engine.log").open("ab") as log:
            process, witness = _start_with_witness(command, env=env, log=log, ended_file=workdir / ENDED_FILE)
        meta = {"pid": process.pid, "witness_pid": witness, "port": port, "tag": spec.tag,
                "started_at": _now().isoformat()}  # fmt: skip
        (workdir / "instance.json").write_text(json.dumps(meta))
        _wait_for_command_line(process.pid)
        return self._recorded(spec.instance_id, meta)

    def _pod_launch(self, spec: InstanceSpec) -> ProviderInstance:
        """A pod: its command in the sandbox, supervised by pod.py; each port it declares mapped to a
        free port here (told to it as PORT_<port>, like a cloud's mapped ports)."""
        if spec.image is None or (refusal := self.image_refusal(spec.image)) is not None:
            raise ProviderError(refusal or "A pod needs an image.", permanent=True)
        volume = None
        if spec.volume_id:
            volume = self.volumes.data_path(spec.volume_id)
            if not volume.is_dir():
                raise ProviderError(f"Volume {spec.volume_id} is not on this machine.", permanent=True)
        ports = {port: _free_port() for port in spec.ports} or {0: _free_port()}
        workdir = self.instances_dir / spec.instance_id
        workdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", POD_MODULE, "--instance-id", spec.instance_id, "--tag", spec.tag,
                   "--port", str(next(iter(ports.values()))), "--workdir", str(workdir)]  # fmt: skip
        if volume is not None:
            command += ["--volume", str(volume), "--mount-path", spec.volume_mount_path]
        if bwrap := bwrap_path():
            command += ["--bwrap", bwrap, "--images", str(self.images_dir)]
        if 22 in ports and spec.ssh_public_keys:  # the image's SSH server (pod_init.py), for the pod's keys
            command += ["--ssh-port", str(ports[22]), "--ssh-host", str(self.config.get("ssh_host", "127.0.0.1"))]
        command += ["--", *(spec.command or LOCAL_IMAGES[spec.image]), *spec.args]
        env = {  # the pod's own environment: nothing of the platform's (its secrets stay out)
            "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            **spec.env,
            **{f"PORT_{port}": str(host) for port, host in ports.items() if port},
            **_port_mapped(spec.env, ports),
            "PUBLIC_KEY": "\n".join(spec.ssh_public_keys),
            "GPUCLOUD_IMAGES": str(self.images_dir),
            "GPUCLOUD_LLAMA_MODEL": str(_gguf_path({"gguf": SMOLLM2_GGUF}))
            if spec.image == "gpucloud/llama-cpp"
            else "",
            CUSTOM_KEY_ENV: spec.api_key,
        }
        for stale in (ENDED_FILE, SEEN_GONE_FILE, RESTARTS_FILE):  # from what this instance ran before
            (workdir / stale).unlink(missing_ok=True)
        with (workdir / "engine.log").open("ab") as log:
            process, witness = _start_with_witness(command, env=env, log=log, ended_file=workdir / ENDED_FILE)
        meta = {"pid": process.pid, "witness_pid": witness, "port": next(iter(ports.values())), "tag": spec.tag,
                "started_at": _now().isoformat(), "ports": {str(k): v for k, v in ports.items() if k}}  # fmt: skip
        (workdir / "instance.json").write_text(json.dumps(meta))
        _wait_for_command_line(process.pid)
        return self._recorded(spec.instance_id, meta)

    def status(self, provider_instance_id: str) -> ProviderInstance:
        for process in _engine_processes(tag=None):
            if process.instance_id == provider_instance_id:
                restarts = self.instances_dir / provider_instance_id / RESTARTS_FILE
                seen = process.as_instance()
                return dataclasses.replace(seen, restarts=int(restarts.read_text())) if restarts.exists() else seen
        meta = self._meta(provider_instance_id)
        return ProviderInstance(
            provider_instance_id=provider_instance_id,
            instance_id=provider_instance_id,
            tag=str(meta.get("tag", "")),
            state=InstanceState.TERMINATED,
            ended_at=self._ended_at(provider_instance_id),
        )

    def terminate(self, provider_instance_id: str) -> None:
        for process in _engine_processes(tag=None):
            if process.instance_id == provider_instance_id:
                _stop(process.pid)

    def list_instances(self, tag: str) -> list[ProviderInstance]:
        return [p.as_instance() for p in _engine_processes(tag=tag)]

    def logs(self, provider_instance_id: str, *, tail: int = 200) -> list[str]:
        path = self.instances_dir / provider_instance_id / "engine.log"
        if not path.exists():
            return []
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 256 * 1024))
            lines = handle.read().decode("utf-8", "replace").splitlines()
        return lines[-tail:]

    def follow_logs(self, provider_instance_id: str) -> Iterator[str]:
        """The whole log, then new lines as the engine writes them, until it exits."""
        path = self.instances_dir / provider_instance_id / "engine.log"
        if not path.exists():
            return
        with path.open("rb") as handle:
            pending = b""
            while True:
                chunk = handle.read(64 * 1024)
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    yield from (line.decode("utf-8", "replace") for line in lines)
                    continue
                if self.status(provider_instance_id).state == InstanceState.TERMINATED:
                    if pending:
                        yield pending.decode("utf-8", "replace")
                    return
                time.sleep(FOLLOW_POLL_SECONDS)

    def endpoint(self, provider_instance_id: str) -> str:
        port = self._meta(provider_instance_id).get("port")
        if not port:
            raise ProviderError(f"Unknown local instance {provider_instance_id}.", permanent=True)
        return f"http://127.0.0.1:{port}"

    def port_url(self, provider_instance_id: str, port: int) -> str:
        """A pod's port, mapped to a free one here at launch (instance.json)."""
        mapped = self._meta(provider_instance_id).get("ports", {}).get(str(port))
        if not mapped:
            raise ProviderError(f"Local instance {provider_instance_id} exposes no port {port}.", permanent=True)
        return f"http://127.0.0.1:{mapped}"

    def tcp_endpoint(self, provider_instance_id: str, port: int) -> tuple[str, int]:
        mapped = self._meta(provider_instance_id).get("ports", {}).get(str(port))
        if not mapped:
            raise ProviderError(f"Local instance {provider_instance_id} exposes no port {port}.", permanent=True)
        return str(self.config.get("ssh_host", "127.0.0.1")), int(mapped)

    def last_activity(self, provider_instance_id: str) -> datetime | None:
        """The pod's last SSH session, as its first process records it (pod_init.py) on its container disk."""
        mark = self.instances_dir / provider_instance_id / ACTIVITY_FILE
        return datetime.fromtimestamp(mark.stat().st_mtime, UTC) if mark.exists() else None

    # --- volumes: directories on this machine (volumes.py) ---------------------------------
    @property
    def volumes(self) -> LocalVolumes:
        return LocalVolumes(Path(self.config["volumes_dir"]))

    def volume_create(self, spec: VolumeSpec) -> ProviderVolume:
        return self.volumes.create(spec)

    def volume_resize(self, provider_volume_id: str, size_gb: int) -> ProviderVolume:
        return self.volumes.resize(provider_volume_id, size_gb)

    def volume_delete(self, provider_volume_id: str) -> None:
        self.volumes.delete(provider_volume_id)

    def volumes_list(self, tag: str) -> list[ProviderVolume]:
        return self.volumes.list(tag)

    # --- helpers --------------------------------------------------------------------------
    def _recorded(self, instance_id: str, meta: dict[str, Any]) -> ProviderInstance:
        return ProviderInstance(
            provider_instance_id=instance_id,
            instance_id=instance_id,
            tag=str(meta["tag"]),
            state=InstanceState.RUNNING,
            endpoint_url=f"http://127.0.0.1:{meta['port']}",
            started_at=datetime.fromisoformat(meta["started_at"]),
        )

    def _meta(self, instance_id: str) -> dict[str, Any]:
        path = self.instances_dir / instance_id / "instance.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _ended_at(self, instance_id: str) -> datetime | None:
        """When a gone engine ended: what its witness wrote or, where none did (an engine from before
        witnesses, or one whose witness went down with it), when a look first found it gone; None for
        an instance never launched here."""
        workdir = self.instances_dir / instance_id
        meta = self._meta(instance_id)
        if not meta:
            return None
        ended = workdir / ENDED_FILE
        if not ended.exists() and meta.get("witness_pid"):  # gone a moment ago: the witness is writing
            _gone_within(int(meta["witness_pid"]), WITNESS_WAIT_SECONDS, module=WITNESS_MODULE)
        if ended.exists():
            return datetime.fromisoformat(ended.read_text())
        seen = workdir / SEEN_GONE_FILE
        with contextlib.suppress(FileExistsError), seen.open("x") as first:  # every later look agrees
            first.write(_now().isoformat())
        return datetime.fromisoformat(seen.read_text())


class _EngineProcess:
    def __init__(self, pid: int, argv: list[str], started_at: datetime) -> None:
        self.pid = pid
        self.argv = argv
        self.started_at = started_at

    def _arg(self, name: str) -> str:
        return self.argv[self.argv.index(name) + 1] if name in self.argv else ""

    @property
    def instance_id(self) -> str:
        return self._arg("--instance-id")

    @property
    def tag(self) -> str:
        return self._arg("--tag")

    def as_instance(self) -> ProviderInstance:
        return ProviderInstance(
            provider_instance_id=self.instance_id,
            instance_id=self.instance_id,
            tag=self.tag,
            state=InstanceState.RUNNING,
            endpoint_url=f"http://127.0.0.1:{self._arg('--port')}",
            started_at=self.started_at,
        )


def _engine_processes(*, tag: str | None) -> list[_EngineProcess]:
    """Live engine processes (zombies are reaped, not counted), optionally only those with `tag`."""
    found = []
    boot = _boot_time()
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if not any(module in argv for module in ENGINE_MODULES):
                continue
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        pid = int(entry.name)
        if stat[0] in ("Z", "X"):
            _reap(pid)
            continue
        process = _EngineProcess(pid, argv, datetime.fromtimestamp(boot + int(stat[19]) / ticks, tz=UTC))
        if tag is None or process.tag == tag:
            found.append(process)
    return found


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: its own parent (or init) reaps it


def _stop(pid: int) -> None:
    """SIGTERM; then, if it has not exited within STOP_GRACE_SECONDS, SIGKILL to its process group
    (it leads its own session: whatever it started goes with it). Returns once it is gone, or after
    the grace twice over (the kernel finishes a SIGKILL; the next look finds it gone)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if _gone_within(pid, STOP_GRACE_SECONDS):
        return
    try:
        os.killpg(pid, signal.SIGKILL) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    _gone_within(pid, STOP_GRACE_SECONDS)


def _start_with_witness(
    command: list[str], *, env: dict[str, str], log: IO[bytes], ended_file: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """The engine and its witness (witness.py), each in a session of its own (a stop that kills the
    engine's process group leaves the witness to write the end). The engine inherits the pipe's only
    write end and never uses it; the witness reads the other end until the kernel closes the engine's
    at its exit. Returns the engine's process and the witness's pid."""
    read_end, write_end = os.pipe()
    try:
        witness = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", WITNESS_MODULE, str(ended_file)], cwd=PROJECT_ROOT, stdin=read_end,
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )  # fmt: skip
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, pass_fds=(write_end,), start_new_session=True,
        )  # fmt: skip
    finally:
        os.close(read_end)
        os.close(write_end)  # from here on the engine holds the only one
    return process, witness.pid


def _gone_within(pid: int, seconds: float, *, module: str | None = None) -> bool:
    """Whether `pid` (running `module`, when given) is gone, waiting up to `seconds` for it."""
    deadline = time.monotonic() + seconds
    while True:
        if not _alive(pid, module):
            _reap(pid)  # a zombie child of ours (a worker that launched it) goes now, not at its next launch
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _wait_for_command_line(pid: int) -> None:
    """Until /proc shows the new engine's command line, by which list_instances and terminate find
    it. Popen returns as soon as the child has begun to exec, before the kernel has set up the new
    argv: a reconciler listing then would miss the engine (and not reap it), a terminate would not
    stop it. A child that died meanwhile is not waited for."""
    deadline = time.monotonic() + COMMAND_LINE_WAIT_SECONDS
    while time.monotonic() < deadline and _alive(pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            if any(module in argv for module in ENGINE_MODULES):
                return
        except OSError:
            return  # exited while we looked
        time.sleep(0.001)


def _alive(pid: int, module: str | None = None) -> bool:
    """Whether `pid` runs (and runs `module`, when given: a pid recorded long ago may be another
    process's by now)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if module is None:
            return state not in ("Z", "X")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return state not in ("Z", "X") and module in argv


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def _gguf_path(model: dict[str, Any]) -> Path:
    """A GGUF given by path, or by a file inside an installed package (located without importing it)."""
    if "path" in model:
        path = Path(model["path"])
    elif "gguf" in model:
        spec = importlib.util.find_spec(model["gguf"]["package"])
        if spec is None or not spec.submodule_search_locations:
            raise ProviderError(
                f"The model package {model['gguf']['package']!r} is not installed on this machine.", permanent=True
            )
        path = Path(next(iter(spec.submodule_search_locations))) / model["gguf"]["file"]
    else:
        raise ProviderError("The local provider needs a GGUF model.", permanent=True)
    if not path.is_file():
        raise ProviderError(f"Model file {path} does not exist.", permanent=True)
    return path


def _port_mapped(env: dict[str, str], ports: dict[int, int]) -> dict[str, str]:
    """PORT (a container endpoint's port: where its server is to listen) as mapped here, like PORT_<port>."""
    port = env.get("PORT", "")
    return {"PORT": str(ports[int(port)])} if port.isdigit() and int(port) in ports else {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _now() -> datetime:
    return datetime.now(tz=UTC)
