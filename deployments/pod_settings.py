"""What a pod asks for (PodSettings) and the checks its settings pass, shared by pods
(deployments/pods.py) and the templates they start from (deployments/pod_templates.py). Every
refusal is a 400 naming the field."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from accounts.ssh_keys import SshKeyInvalid, ssh_public_key_parse
from catalog.models import CloudType
from gpucloud.core.errors import InvalidRequest

GPU_COUNTS = (1, 2, 4, 8)
IDLE_MINUTES = (5, 10080)  # a week
MAX_PORTS = 10
MAX_ENV = 64
MAX_ARGV = 64
MAX_TEXT = 4096  # one env value, command or argument
CONTAINER_DISK_GB = (1, 1024)
# An image reference as Docker reads it: [registry[:port]/]path[:tag][@sha256:digest], lower-case path.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*(?::[0-9]{{1,5}})?)/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_PORT = re.compile(r"^([0-9]{1,5})/(http|tcp)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/sbin", "/sys", "/usr", "/home/pod")


@dataclass(frozen=True)
class NewVolume:
    size_gb: int
    name: str = ""


@dataclass(frozen=True)
class PodSettings:
    """What a pod runs, as asked (the API's body, under its template's settings; checked by `pod_create`)."""

    name: str
    image: str
    gpu_type: str
    gpu_count: int = 1
    region: str | None = None  # None: where an existing volume lives
    cloud_type: str = CloudType.ANY
    spot: bool = False
    max_price_micros: int | None = None
    container_disk_gb: int = 20
    ports: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    ssh_public_keys: list[str] = field(default_factory=list)
    volume_id: str | None = None
    new_volume: NewVolume | None = None
    volume_mount_path: str = "/workspace"
    template: str = ""
    idle_timeout_minutes: int | None = None  # None: the default (spot: GPUCLOUD_POD_SPOT_IDLE_MINUTES); 0: never


def pod_settings_check(asked: PodSettings) -> None:
    """400 naming the first setting a pod cannot have (its GPU type, region and volume are looked up
    by pod_create)."""
    container_settings_check(
        image=asked.image, container_disk_gb=asked.container_disk_gb, ports=asked.ports, env=asked.env,
        command=asked.command, args=asked.args, volume_mount_path=asked.volume_mount_path,
    )  # fmt: skip
    if asked.gpu_count not in GPU_COUNTS:
        raise InvalidRequest("gpu_count must be 1, 2, 4 or 8.", param="gpu_count")
    if asked.idle_timeout_minutes is not None and not (
        asked.idle_timeout_minutes == 0 or IDLE_MINUTES[0] <= asked.idle_timeout_minutes <= IDLE_MINUTES[1]
    ):
        raise InvalidRequest(
            f"idle_timeout_minutes is 0 (never) or between {IDLE_MINUTES[0]} and {IDLE_MINUTES[1]}.",
            param="idle_timeout_minutes",
        )
    if asked.cloud_type not in CloudType.values:
        raise InvalidRequest(f"cloud_type must be one of {', '.join(CloudType.values)}.", param="cloud_type")
    if asked.max_price_micros is not None and not asked.spot:
        raise InvalidRequest(
            "max_price_per_hour_usd is the ceiling of a spot pod; set spot: true.", param="max_price_per_hour_usd"
        )
    if asked.max_price_micros is not None and asked.max_price_micros <= 0:
        raise InvalidRequest("max_price_per_hour_usd must be more than 0.", param="max_price_per_hour_usd")
    for key in asked.ssh_public_keys:
        try:
            ssh_public_key_parse(key)
        except SshKeyInvalid as exc:
            raise InvalidRequest(f"ssh_public_keys: {exc}", param="ssh_public_keys") from exc
    if asked.volume_id and asked.new_volume:
        raise InvalidRequest(
            "Attach an existing volume (volume_id) or ask for a new one (volume), not both.", param="volume"
        )


def container_settings_check(
    *, image: str, container_disk_gb: int, ports: list[str], env: dict[str, str], command: list[str],
    args: list[str], volume_mount_path: str,
) -> None:  # fmt: skip
    """What the machine runs, as a pod or a template asks for it: 400 naming the first field at fault."""
    if len(image) > 300 or not _IMAGE.match(image):
        raise InvalidRequest(
            f"{image[:100]!r} is not an image reference: [registry/]name[:tag][@sha256:digest], "
            "lower-case name, e.g. runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04.",
            param="image",
        )
    low, high = CONTAINER_DISK_GB
    if not low <= container_disk_gb <= high:
        raise InvalidRequest(f"container_disk_gb must be between {low} and {high}.", param="container_disk_gb")
    _ports_checked(ports)
    _env_checked(env)
    for name, argv in (("command", command), ("args", args)):
        if len(argv) > MAX_ARGV or any(not item or len(item) > MAX_TEXT for item in argv):
            raise InvalidRequest(
                f"{name} takes at most {MAX_ARGV} non-empty strings of at most {MAX_TEXT} characters.", param=name
            )
    _mount_path_checked(volume_mount_path)


def _ports_checked(ports: list[str]) -> None:
    if len(ports) > MAX_PORTS:
        raise InvalidRequest(f"A pod exposes at most {MAX_PORTS} ports.", param="ports")
    numbers = []
    for port in ports:
        found = _PORT.match(port)
        if found is None or not 1 <= int(found.group(1)) <= 65535:
            raise InvalidRequest(
                f"{port[:40]!r} is not a port: write it as 8888/http or 22/tcp (1-65535).", param="ports"
            )
        numbers.append(int(found.group(1)))
    if len(set(numbers)) != len(numbers):
        raise InvalidRequest("Each port is exposed once.", param="ports")


def _env_checked(env: dict[str, str]) -> None:
    if len(env) > MAX_ENV:
        raise InvalidRequest(f"A pod takes at most {MAX_ENV} environment variables.", param="env")
    for name, value in env.items():
        if not _ENV_NAME.match(name):
            raise InvalidRequest(
                f"{name[:60]!r} is not an environment variable name: letters, digits and _, not starting with a digit.",
                param="env",
            )
        if len(value) > MAX_TEXT:
            raise InvalidRequest(f"The value of {name} is over {MAX_TEXT} characters.", param="env")


def _mount_path_checked(path: str) -> None:
    normal = posixpath.normpath(path) if path else ""
    if not path.startswith("/") or normal != path or normal == "/" or len(path) > 200:
        raise InvalidRequest(
            "volume_mount_path must be an absolute, normalised path such as /workspace.", param="volume_mount_path"
        )
    if any(normal == system or normal.startswith(system + "/") for system in _SYSTEM_DIRS):
        raise InvalidRequest(
            f"A volume cannot be mounted over {normal}; use a path such as /workspace.", param="volume_mount_path"
        )
