from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, get_type_hints

from django.conf import settings
from ninja import Schema
from pydantic import ConfigDict, Field, JsonValue, create_model

from deployments.metrics import WINDOW_DESCRIPTIONS, Window
from deployments.scaling.settings import IDLE_TIMEOUT_BOUNDS, TARGET_MAX
from deployments.sla import BOUNDS as SLA_BOUNDS
from gpucloud.core.money import usd_display
from gpucloud.core.schemas import BodyIn

PRESET_SLUGS = ("speed", "latency", "cost", "balanced")


_CONTAINER: JsonValue = {"properties": {"kind": {"const": "container"}}, "required": ["kind"]}
_NOT_CONTAINER: JsonValue = {"not": _CONTAINER}
CONTAINER_ONLY = ("image", "command", "port", "gpu_count")
NOT_FOR_CONTAINERS = ("model_id", "preset")


class DeploymentCreateIn(BodyIn):
    # The service checks these (400 with the reason); the description says them too: the kinds, the
    # bounds, what each kind requires, and the fields that belong to one kind only.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {
                    "if": {"not": {"properties": {"kind": {"const": "serverless"}}, "required": ["kind"]}},
                    "then": {"properties": {"idle_timeout_seconds": {"type": "null"}, "start_cold": {"const": False}}},
                },
                {
                    "if": _NOT_CONTAINER,
                    "then": {
                        "required": ["model_id", "region"],
                        "properties": {name: {"type": "null"} for name in CONTAINER_ONLY},
                    },
                },
                {
                    "if": _CONTAINER,
                    "then": {
                        "required": ["image", "port"],
                        "properties": {
                            **{name: {"type": "null"} for name in NOT_FOR_CONTAINERS},
                            "spot": {"const": False},
                        },
                    },
                },
            ]
        }
    )

    name: str = Field("", max_length=100)
    model_id: str | None = Field(
        None,
        description="model and serverless (required; 400 without it, and for a container): a catalog model (GET "
        "/models; 404 for none), or a Hugging Face id `org/name` where the operator "
        "allows them (GPUCLOUD_HF_MODELS; 403 `hf_model_not_allowed` otherwise, 400 for no such id): served by vLLM "
        "on a GPU (400 for the CPU), with at least the VRAM its size in the name needs (400 otherwise; no size: the "
        "GPU chosen is trusted)",
        examples=["smollm2-135m-instruct"],
    )
    gpu_type: str = Field(
        description="A GPU type (GET /gpu-types; 404 for none); for a model, with its min_vram_gb or more (400 "
        "otherwise)",
        examples=["cpu"],
    )
    region: str | None = Field(
        None,
        description="A region (GET /regions; 404 for none); 409 when no provider offers the GPU there now. Required "
        "for model and serverless (400 without it); a container without one runs in the cheapest region with "
        "capacity",
        examples=["local"],
    )
    replicas: int = Field(1, json_schema_extra={"minimum": 1, "maximum": settings.GPUCLOUD_MAX_REPLICAS})
    preset: str | None = Field(
        None, description="speed, latency, cost or balanced: the GPU must be the preset's. Not for a container"
    )
    kind: str = Field(
        "model",
        description="model (replicas run until changed), serverless (scales to zero after idle_timeout_seconds "
        "without requests; the next request wakes it) or container (an endpoint of any image serving HTTP on "
        "`port`: `image`, `command`, `port` and `gpu_count` instead of `model_id`; the same endpoints as POST "
        "/api/v1/inference-service makes)",
        json_schema_extra={"enum": ["model", "serverless", "container"]},
    )
    idle_timeout_seconds: int | None = Field(
        None,
        description="serverless only: default 900 (15 minutes)",
        json_schema_extra={"minimum": IDLE_TIMEOUT_BOUNDS[0], "maximum": IDLE_TIMEOUT_BOUNDS[1]},
    )
    start_cold: bool = Field(False, description="serverless only: launch nothing until the first request")
    spot: bool = Field(
        False,
        description="Run on interruptible (spot) machines only: cheaper, but the provider may take a replica "
        "back at any time (it is replaced; webhook deployment.preempted). false (the default): on-demand "
        "machines only (a container's always). The answer says which; 409 when no provider offers that kind there "
        "now",
    )
    cloud_type: str = Field(
        "any",
        description="Which machines its replicas may run on. secure: data-center machines the provider runs "
        "(RunPod Secure Cloud, Vast.ai datacenter hosts, Lambda, DigitalOcean, the operator's own); community: "
        "third parties' machines the provider vetted (RunPod Community Cloud, Vast.ai's other verified hosts), "
        "cheaper, less private; any (the default): the cheapest of either (a container: the cheapest tier with a "
        "machine free, and the answer says which). The answer says which, and each replica the tier it runs on; "
        "409 when no provider offers it there now",
        json_schema_extra={"enum": ["any", "secure", "community"]},
    )
    image: str | None = Field(
        None,
        max_length=300,
        description="container only (required): the image, `[registry/]name[:tag][@sha256:digest]` (400 "
        "otherwise). A provider must run it (400 otherwise): the local provider runs only its own images "
        "(gpucloud/shell, gpucloud/llama-cpp, gpucloud/jupyterlab); the GPU clouds run any image",
        examples=["gpucloud/shell"],
    )
    command: str | None = Field(
        None,
        max_length=4096,
        description="container only: run by `sh -c` (empty or absent: the image's own). It must serve HTTP on "
        "$PORT: `port` on the clouds, the port mapped for it on the local provider",
        examples=["python3 -m http.server $PORT"],
    )
    port: int | None = Field(
        None, ge=1, le=65535, description="container only (required): the port its HTTP server listens on"
    )
    gpu_count: int | None = Field(
        None,
        description="container only: GPUs per replica, 1 (the default), 2, 4 or 8 (400 otherwise), at most what "
        "one machine of the GPU type has there",
        json_schema_extra={"enum": [1, 2, 4, 8, None]},
    )


class ScaleIn(BodyIn):
    replicas: int = Field(
        description="Replicas to run: 0 stops it (kept, billing nothing), up to GPUCLOUD_MAX_REPLICAS (400 outside)",
        json_schema_extra={"minimum": 0, "maximum": settings.GPUCLOUD_MAX_REPLICAS},
    )


class InstanceOut(Schema):
    id: str
    state: str
    provider: str | None
    gpu_type: str | None = Field(description="The GPU class it runs on")
    preset: str | None = Field(description="The preset it runs (during a rollout, the old or the new one)")
    hourly_price_usd: float = Field(description="Its own offer's price per hour")
    spot: bool = Field(description="Launched on an interruptible (spot) offer")
    cloud_type: str | None = Field(
        description="The tier of the offer it was launched on: secure or community (null until launched)"
    )
    launched_at: datetime | None
    ready_at: datetime | None
    terminated_at: datetime | None
    failure_reason: str | None


class RolloutOut(Schema):
    state: str = Field(description="rolling, done or failed (the old replicas keep serving; apply it again)")
    preset: str | None = Field(description="The preset rolled to")
    from_preset: str | None
    replaced: int = Field(description="Replicas moved to the new configuration so far")
    total: int
    message: str | None = Field(description="The last step, or why it stopped")
    started_at: datetime | None


class DeploymentContainerOut(Schema):
    image: str
    command: str = Field(description="Run by `sh -c`; empty: the image's own")
    port: int
    url: str = Field(description="Where it answers, with an account key of the org (Authorization: Bearer)")


class DeploymentOut(Schema):
    id: str
    name: str
    status: str
    status_reason: str | None
    model_id: str | None
    gpu_type: str | None
    region: str | None
    preset: str | None
    replicas: int
    kind: str = Field(
        description="model (replicas run until changed), serverless (scales to zero when idle) or container (an "
        "image serving HTTP: see `container`; POST /deployments/{id}/scale sets its replicas)"
    )
    spot: bool = Field(description="Its replicas run on interruptible (spot) machines only; false: on-demand only")
    cloud_type: str = Field(
        description="The tiers its replicas may run on: secure, community, or any (the cheapest of either)",
        json_schema_extra={"enum": ["any", "secure", "community"]},
    )
    idle_timeout_seconds: int = Field(description="Idle time after which a serverless endpoint scales to zero")
    scaling: ScalingOut = Field(description="The autoscaling settings, as GET /deployments/{id}/scaling answers")
    endpoint_url: str = Field(
        description="POST OpenAI requests here (with your API key): chat completions, or embeddings for an "
        "embedding model; on /v1, send this deployment's id as `model`. A container's: its URL (any method and "
        "path under it, with an account key)"
    )
    container: DeploymentContainerOut | None = Field(description="A container endpoint's image; null for others")
    hourly_cost_usd: float = Field(
        description="What bills now, per hour: the launched replicas not yet confirmed ended, each at its own price"
    )
    created_at: datetime
    started_at: datetime | None
    runtime_seconds: int = Field(description="Seconds with at least one replica billed (it stops while none runs)")
    total_cost_usd: float
    instances: list[InstanceOut]
    rollout: RolloutOut | None = Field(description="The last preset change; null when there was none")


class PresetIn(BodyIn):
    # Required, and one of the presets: the service checks both and names the choices (400); the
    # description says so too.
    model_config = ConfigDict(json_schema_extra={"required": ["preset"]})

    preset: str | None = Field(
        None,
        description="speed, latency, cost or balanced (see GET /api/v1/presets)",
        json_schema_extra={"enum": list(PRESET_SLUGS)},
    )


class DeploymentEventOut(Schema):
    at: datetime
    instance_id: str | None
    from_status: str
    to_status: str
    reason: str


class GpuModelConfigOut(Schema):
    model_id: str
    gpu_type: str
    regions: list[str] = Field(description="Regions with an offer for this GPU now")
    hourly_price_usd: float | None


class LogsOut(Schema):
    instance_id: str
    lines: list[str]


# A window's figures come from deployments.metrics.Window, the shape the page reads too; its money
# fields are answered in USD under the names below instead.
WINDOW_IN_MICROS = ("gpu_cost_micros", "cost_per_million_tokens_micros")


class _MetricsHead(Schema):
    deployment_id: str
    window: str
    since: datetime
    until: datetime


def _metrics_fields() -> dict[str, Any]:
    """The window's figures (but its money), then what only the API adds."""
    hints = get_type_hints(Window)
    window = {
        f.name: (hints[f.name], Field(description=WINDOW_DESCRIPTIONS.get(f.name)))
        for f in dataclasses.fields(Window)
        if f.name not in WINDOW_IN_MICROS
    }
    return {
        **window,
        "replicas_ready": (int, ...),
        "gpu_cost_usd": (float, Field(description="Replica running time in the window at the hourly price")),
        "cost_per_1m_tokens_usd": (float | None, Field(description="GPU cost of the window / tokens served in it")),
    }


_METRICS_FIELDS: dict[str, Any] = _metrics_fields()
MetricsOut = create_model("MetricsOut", __base__=_MetricsHead, **_METRICS_FIELDS)


class ScalingTarget(Schema):
    metric: str = Field(description="concurrency (requests in flight per replica) or queue_depth (waiting)")
    value: float = Field(description="Requests per replica the autoscaler aims for")


class ScalingTargetIn(BodyIn):
    metric: str | None = Field(default=None, json_schema_extra={"enum": ["concurrency", "queue_depth", None]})
    value: float | None = Field(default=None, json_schema_extra={"exclusiveMinimum": 0, "maximum": TARGET_MAX})


def _scaling_rules() -> list[JsonValue]:
    """The rules between ScalingIn's fields, as JSON Schema can state them: min_replicas 0 needs
    scale_to_zero, and min_replicas <= max_replicas, said once for each maximum it may take."""
    rules: list[JsonValue] = [
        {
            "if": {"properties": {"scale_to_zero": {"const": False}}, "required": ["scale_to_zero"]},
            "then": {"properties": {"min_replicas": {"anyOf": [{"type": "null"}, {"minimum": 1}]}}},
        }
    ]
    for most in range(1, settings.GPUCLOUD_MAX_REPLICAS):
        rules.append({
            "if": {"properties": {"max_replicas": {"const": most}}, "required": ["max_replicas"]},
            "then": {"properties": {"min_replicas": {"anyOf": [{"type": "null"}, {"maximum": most}]}}},
        })  # fmt: skip
    return rules


class ScalingIn(BodyIn):
    # Bounds the service checks (400 with the reason); written here so the description says them too,
    # with the rules between fields.
    model_config = ConfigDict(
        json_schema_extra={
            "allOf": _scaling_rules(),
            "description": "Fields left out keep their values. min_replicas may not exceed max_replicas, and 0 "
            "needs scale_to_zero: true (400 when the request says both; 409 when it breaks the rule with a "
            "setting the deployment has now).",
        }
    )

    min_replicas: int | None = Field(None, json_schema_extra={"minimum": 0, "maximum": settings.GPUCLOUD_MAX_REPLICAS})
    max_replicas: int | None = Field(None, json_schema_extra={"minimum": 1, "maximum": settings.GPUCLOUD_MAX_REPLICAS})
    scale_to_zero: bool | None = None
    idle_timeout_seconds: int | None = Field(
        None, json_schema_extra={"minimum": IDLE_TIMEOUT_BOUNDS[0], "maximum": IDLE_TIMEOUT_BOUNDS[1]}
    )
    target: ScalingTargetIn | None = None
    cold_start_wait_seconds: int | None = Field(
        None, ge=0, le=600,
        description="How long a request to this deployment while it is cold is held for the wake (when the "
        "wake is expected to take at most this long) before being served; 0 answers 202 at once",
    )  # fmt: skip


class ScalingOut(Schema):
    min_replicas: int
    max_replicas: int
    scale_to_zero: bool
    idle_timeout_seconds: int
    target: ScalingTarget
    replicas: int = Field(description="Replicas the deployment runs now (desired)")
    cold_start_wait_seconds: int = Field(
        description="A request while cold is held this long at most for the wake, then served (longer: 202)"
    )


def _sla_bounds(name: str) -> dict[str, Any]:
    low, high = SLA_BOUNDS[name]
    return {"minimum": low, "maximum": high}


class SlaIn(BodyIn):
    ttft_target_ms: int | None = Field(
        None,
        description="p95 time to first token to stay under; null removes it",
        json_schema_extra=_sla_bounds("ttft_target_ms"),
    )
    throughput_target_tps: float | None = Field(
        None, description="tokens/s per request to stay above", json_schema_extra=_sla_bounds("throughput_target_tps")
    )
    concurrency_limit: int | None = Field(
        None, description="requests in flight at once; more get 429", json_schema_extra=_sla_bounds("concurrency_limit")
    )


class SlaBreachOut(Schema):
    at: datetime
    metric: str
    target: float
    measured: float
    recovered_at: datetime | None


class SlaOut(Schema):
    ttft_target_ms: int | None
    throughput_target_tps: float | None
    concurrency_limit: int | None
    breach_count_24h: int
    last_ttft_ms: float | None = Field(description="p95 over the last 5 minutes, when there was traffic")
    last_throughput_tps: float | None
    breaches: list[SlaBreachOut]


class InferenceErrorDetail(Schema):
    message: str
    type: str
    param: str | None
    code: str | None


class InferenceErrorOut(Schema):
    """An error of the gateway's inference routes: OpenAI's error shape."""

    error: InferenceErrorDetail


class WakingOut(Schema):
    """202: the deployment is starting (a cold serverless one was woken); retry after Retry-After."""

    status: str = Field(description="deploying")
    message: str
    type: str = Field(description="model_deploying")
    estimated_ready_seconds: int
    deployment_id: str


# --- volumes ------------------------------------------------------------------------------------

VOLUME_STATUSES: list[JsonValue] = ["creating", "available", "resizing", "deleting", "deleted", "failed"]
STORAGE_PRICES = (  # what billing charges (deployments.volumes), as the pages say it
    f"{usd_display(settings.GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS)} per GB-hour while a pod runs on it, "
    f"{usd_display(settings.GPUCLOUD_VOLUME_IDLE_GB_HOUR_MICROS)} while idle"
)


class VolumeCreateIn(BodyIn):
    name: str = Field(description="1 to 100 characters (400 otherwise)", max_length=100, examples=["datasets"])
    size_gb: int = Field(
        description=f"Its size in GB (400 outside the bounds); it bills per GB-hour for as long as it exists: "
        f"{STORAGE_PRICES}",
        json_schema_extra={"minimum": 1, "maximum": settings.GPUCLOUD_VOLUME_MAX_GB},
        examples=[20],
    )
    region: str = Field(
        description="A region (GET /regions; 404 for none); 409 when no provider keeps volumes there",
        examples=["local"],
    )
    gpu_type: str | None = Field(
        None,
        description="Place it with a provider that offers this GPU type in the region, so that a pod of that GPU "
        "can mount it (404 for an unknown GPU type; 409 when none there keeps volumes)",
    )


class VolumeGrowIn(BodyIn):
    size_gb: int = Field(
        description="The new size in GB: more than now (volumes only grow; 400 otherwise), within the bounds",
        json_schema_extra={"minimum": 1, "maximum": settings.GPUCLOUD_VOLUME_MAX_GB},
    )


class VolumeOut(Schema):
    id: str
    name: str
    size_gb: int = Field(description="Its size now at the provider")
    target_size_gb: int | None = Field(description="While it grows: the size asked for")
    region: str
    status: str = Field(
        description="creating → available (→ resizing → available) → deleting → deleted; failed when the "
        "provider could not make it (never billed)",
        json_schema_extra={"enum": VOLUME_STATUSES},
    )
    status_reason: str | None
    hourly_price_usd: float = Field(description="What it bills per hour at its size now")
    total_cost_usd: float = Field(description="Billed so far (metering charges every minute)")
    created_at: datetime
    ready_at: datetime | None = Field(description="When the provider made it: billing starts")
    deleted_at: datetime | None = Field(description="When the provider confirmed it gone: billing stops")


# --- pods ---------------------------------------------------------------------------------------

POD_STATUSES: list[JsonValue] = [
    "provisioning", "running", "stopping", "stopped", "starting", "terminating", "terminated", "failed",
]  # fmt: skip


class PodVolumeIn(BodyIn):
    size_gb: int = Field(
        description=f"A new volume of this size, placed where the pod runs; it bills per GB-hour for as long as it "
        f"exists: {STORAGE_PRICES}",
        json_schema_extra={"minimum": 1, "maximum": settings.GPUCLOUD_VOLUME_MAX_GB},
    )
    name: str = Field("", max_length=100, description="Default: the pod's name + ' volume'")


class ContainerSettingsIn(BodyIn):
    """What the machine runs, as a pod or a template asks for it (the services check these: 400 naming
    the field)."""

    container_disk_gb: int = Field(
        20, description="Its container disk, gone when it stops", json_schema_extra={"minimum": 1, "maximum": 1024}
    )
    volume_mount_path: str = Field(
        "/workspace",
        max_length=200,
        description="Where the volume appears: an absolute path outside the system's directories",
    )
    ports: list[str] = Field(
        default_factory=list, description='Exposed ports, "8888/http" or "22/tcp", at most 10, each once',
        json_schema_extra={"maxItems": 10},
    )  # fmt: skip
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables (names [A-Za-z_][A-Za-z0-9_]*, at most 64)"
    )
    command: list[str] = Field(
        default_factory=list, description="Entry point (empty: the image's own)", json_schema_extra={"maxItems": 64}
    )
    args: list[str] = Field(default_factory=list, description="Its arguments", json_schema_extra={"maxItems": 64})


class PodRentIn(ContainerSettingsIn):
    """What a pod runs, without where: POST /offers/{id}/rent takes these (the offer decides the rest)."""

    template: str | None = Field(
        None,
        max_length=60,
        description="A template to start from (GET /templates; 404 for none): its image, command, args, ports, env, "
        "container_disk_gb, volume_mount_path and name are the defaults, and its suggested volume size makes a new "
        "volume unless volume or volume_id is given. Each of those fields the body gives wins whole, even empty "
        '("env": {} drops its variables, "volume": null its volume)',
        examples=["pytorch-jupyter"],
    )
    name: str = Field("", max_length=100, description="Default: the template's name, else the image")
    image: str | None = Field(
        None,
        max_length=300,
        description="Any image reference ([registry/]name[:tag][@sha256:digest]; 400 otherwise); required without a "
        "template. The local provider has no container runtime and runs gpucloud/shell and gpucloud/jupyterlab "
        "only (400 for others where only it offers the GPU)",
        examples=["gpucloud/shell", "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"],
    )
    idle_timeout_minutes: int | None = Field(
        None,
        description="Terminate it (its volume kept) after this many minutes without activity (requests through "
        "the platform's proxy, SSH sessions where the provider tells): 0 never, else 5 to 10080 (400 otherwise). "
        "Default: spot pods 15 (GPUCLOUD_POD_SPOT_IDLE_MINUTES), on-demand pods never",
    )
    ssh_public_keys: list[str] = Field(
        default_factory=list, description="OpenSSH public keys allowed to SSH in, besides the account's saved ones",
        json_schema_extra={"maxItems": 20},
    )  # fmt: skip


class PodCreateIn(PodRentIn):
    """A pod: what it runs and where (POST /pods)."""

    gpu_type: str = Field(description="A GPU type (GET /gpu-types; 404 for none)", examples=["cpu", "h100"])
    gpu_count: int = Field(1, description="GPUs in the pod", json_schema_extra={"enum": [1, 2, 4, 8]})
    region: str | None = Field(
        None,
        description="A region (GET /regions; 404 for none). Omitted with volume_id: where that volume lives; it must "
        "be that region otherwise (400)",
        examples=["local"],
    )
    cloud_type: str = Field(
        "any",
        description="secure, community or any (the cheapest of either); see POST /deployments",
        json_schema_extra={"enum": ["any", "secure", "community"]},
    )
    spot: bool = Field(False, description="Interruptible machines only (a spot pod taken back stops; volume kept)")
    max_price_per_hour_usd: float | None = Field(
        None,
        description="Spot only (400 otherwise): the most the pod may cost per hour",
        json_schema_extra={"exclusiveMinimum": 0},
    )
    volume: PodVolumeIn | None = Field(None, description="A new volume for it (not with volume_id)")
    volume_id: str | None = Field(
        None, description="An existing volume of yours (404 for none; 409 while another pod runs on it)"
    )


class PodVolumeOut(Schema):
    id: str
    name: str
    size_gb: int
    status: str
    mount_path: str


class PodMachineOut(Schema):
    id: str
    state: str = Field(description="The machine's state (see a deployment's instances)")
    provider: str | None
    cloud_type: str | None = Field(description="secure or community: the tier it was launched on")
    spot: bool
    hourly_price_usd: float
    launched_at: datetime | None
    terminated_at: datetime | None
    failure_reason: str | None


class PodPortOut(Schema):
    port: int
    url: str = Field(description="Through the platform's proxy: a signed-in member, or ?gpucloud_token=<proxy_token>")
    direct_url: str | None = Field(
        description="Its address at the provider, past the platform's proxy, where the provider has one (RunPod's "
        "proxy, a public IP and port; on the local provider, loopback): shown to members who may change the pod; "
        "what guards it there is the app's own (a Jupyter token)"
    )


class PodSshOut(Schema):
    host: str
    port: int
    user: str
    command: str = Field(description="ssh -p <port> <user>@<host>: with a key among the pod's or your account's")


class PodConnectOut(Schema):
    http: list[PodPortOut] = Field(description="Each HTTP port, while the pod runs (503 otherwise)")
    proxy_token: str | None = Field(
        description="Opens its ports without a session (append ?gpucloud_token=...); shown to members who may "
        "change the pod, null for viewers"
    )
    ssh: PodSshOut | None = Field(
        description="While it runs, when it exposes 22/tcp and its provider says where (the local provider does)"
    )


class PodOut(Schema):
    id: str
    name: str
    status: str = Field(
        description="provisioning → running → stopping → stopped → starting → running; terminating → terminated; "
        "failed (status_reason says why)",
        json_schema_extra={"enum": POD_STATUSES},
    )
    status_reason: str | None
    image: str
    gpu_type: str
    gpu_count: int
    region: str
    cloud_type: str
    spot: bool
    max_price_per_hour_usd: float | None
    container_disk_gb: int
    ports: list[str]
    env: dict[str, str]
    command: list[str]
    args: list[str]
    ssh_public_keys: list[str]
    volume: PodVolumeOut | None
    hourly_cost_usd: float = Field(description="What bills now, per hour (0 while stopped; its volume bills apart)")
    total_cost_usd: float = Field(description="GPU time billed so far, every session (its volume apart)")
    created_at: datetime
    stopped_at: datetime | None
    idle_timeout_minutes: int | None = Field(description="Terminated after this long idle; null: never")
    machine: PodMachineOut | None = Field(description="Its current (or last) machine")
    connect: PodConnectOut
    template: str | None = Field(description="The template it was created from")


# --- templates ----------------------------------------------------------------------------------


class TemplateCreateIn(ContainerSettingsIn):
    name: str = Field(description="1 to 100 characters (400 otherwise)", max_length=100, examples=["my notebook"])
    description: str = Field("", max_length=1000)
    image: str = Field(
        max_length=300,
        description="An image reference ([registry/]name[:tag][@sha256:digest]; 400 otherwise)",
        examples=["runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"],
    )
    volume_size_gb: int | None = Field(
        None,
        description="Suggested: a pod created from it gets a new volume of this size unless it names one",
        json_schema_extra={"minimum": 1, "maximum": settings.GPUCLOUD_VOLUME_MAX_GB},
    )


class TemplateOut(Schema):
    id: str = Field(description="tpl_... for the organization's own; a stable name for a built-in (pytorch-jupyter)")
    name: str
    description: str
    builtin: bool = Field(description="Built into the platform: read-only, the same for everyone")
    image: str
    command: list[str]
    args: list[str]
    ports: list[str]
    env: dict[str, str]
    container_disk_gb: int
    volume_mount_path: str
    volume_size_gb: int | None = Field(description="The suggested volume size (none: no volume unless asked)")
    generated_env: list[str] = Field(
        description="Variables its command reads, made for each pod (a random token) unless the pod's env sets them"
    )
    created_at: datetime | None = Field(description="None for a built-in")


# --- the marketplace (GET /offers) ---------------------------------------------------------


class OfferReliabilityOut(Schema):
    launch_success_rate: float | None = Field(
        description="Launched / (launched + failed before launch) over the provider's instances of this GPU in "
        "the last 30 days; null when none was tried"
    )
    launches_30d: int = Field(description="Instances of this GPU the provider launched in the last 30 days")
    preemptions_30d: int = Field(description="Of those, spot machines the provider took back")


class OfferOut(Schema):
    id: str = Field(examples=["off_42"])
    gpu_type: str = Field(description="The catalog's GPU type of one GPU (GET /gpu-types)", examples=["h100"])
    gpu_count: int
    vram_gb: int = Field(description="Across the offer's GPUs")
    region: str
    cloud_type: str = Field(description="secure or community")
    spot: bool = Field(description="Interruptible: the provider may take it back at any time")
    price_per_hour_usd: float = Field(description="What renting it costs per hour")
    price_per_day_usd: float
    available: int = Field(description="How many can be launched, as of last_seen_at")
    reliability: OfferReliabilityOut
    last_seen_at: datetime
    provider: str | None = Field(description="The provider's slug when the operator shows providers, else null")


class OfferPage(Schema):
    data: list[OfferOut]
    total: int = Field(description="Offers matching the filters, on every page")
    limit: int
    offset: int
    has_more: bool


class ModelRentIn(BodyIn):
    model_id: str = Field(description="A catalog model (GET /models; 404 for none)", examples=["smollm2-135m-instruct"])
    name: str = Field("", max_length=100, description="Default: the model's slug")


class OfferRentIn(BodyIn):
    pod: PodRentIn | None = Field(
        None,
        description="Rent it as a pod: POST /pods's body without gpu_type, gpu_count, region, cloud_type, spot, "
        "max_price_per_hour_usd (the offer and the ceiling decide those), volume and volume_id (a rented pod runs "
        "on its container disk; a template's suggested volume is left out). Exactly one of pod and model (400)",
    )
    model: ModelRentIn | None = Field(
        None, description="Rent it as a model deployment of one replica. Exactly one of pod and model (400)"
    )
    max_price_per_hour_usd: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="The most per hour you accept, for the offer or a fallover (422 unless above 0). Default: the "
        "offer's own price. A spot pod keeps it as its ceiling",
    )


class RentSkippedOut(Schema):
    offer_id: str = Field(examples=["off_42"])
    reason: str = Field(examples=["out of capacity"])


class OfferRentOut(Schema):
    kind: str = Field(description="pod or model", json_schema_extra={"enum": ["pod", "model"]})
    id: str = Field(description="The pod's or the deployment's id", examples=["pod_4f2a9c"])
    url: str = Field(description="Its API URL (GET /pods/{id} or GET /deployments/{id})")
    offer_id: str = Field(description="The offer it runs on: the one asked for, or its fallover")
    requested_offer_id: str
    tried: list[RentSkippedOut] = Field(description="The offers skipped before offer_id, in order, with why")
    billing: str = Field(
        description="spot (interruptible) or on_demand, as the offer is",
        json_schema_extra={"enum": ["spot", "on_demand"]},
    )
    price_per_hour_usd: float = Field(description="What it costs per hour: offer_id's price")
    max_price_per_hour_usd: float = Field(description="The ceiling: the body's, else the asked offer's price")
    pod: PodOut | None = Field(description="The pod, when kind is pod")
    deployment: DeploymentOut | None = Field(description="The deployment, when kind is model")
