"""REST endpoints of deployments (reference/000 shapes)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone
from ninja import Router, Status
from pydantic import Field

from accounts.auth import INFERENCE_AUTH, api_principal
from accounts.roles import CAN_READ
from catalog.models import CatalogModel, GpuType
from catalog.selectors import offers_live
from deployments import containers, metrics, preset_rollout, schemas, selectors, services, sla
from deployments.logs import TAIL_MAX, log_tails
from deployments.models import Deployment, DeploymentKind
from deployments.scaling import settings as scaling
from fleet.models import Instance, InstanceState
from gpucloud.core.errors import ApiError, InvalidRequest, answers
from gpucloud.core.money import MICROS_PER_USD

router = Router(tags=["deployments"])


def deployment_out(request: HttpRequest, deployment: Deployment) -> dict[str, object]:
    instances = list(selectors.instances_of(deployment))
    row = selectors.deployment_row(deployment)  # what bills now, runtime and cost: the pages' figures
    live = [i for i in instances if i.state not in (InstanceState.TERMINATED, InstanceState.FAILED)]
    return {
        "id": deployment.pk,
        "name": deployment.name,
        "status": deployment.status,
        "status_reason": deployment.status_reason or None,
        "model_id": deployment.model_id,
        "gpu_type": deployment.gpu_type_id,
        "region": deployment.region_id,
        "preset": deployment.preset_id,
        "replicas": deployment.desired_replicas,
        "kind": deployment.kind,
        "spot": deployment.spot,
        "cloud_type": deployment.cloud_type,
        "idle_timeout_seconds": deployment.idle_timeout_seconds,
        "scaling": _scaling_out(deployment),
        "endpoint_url": _endpoint_url(request, deployment),
        "container": _container_out(request, deployment),
        "hourly_cost_usd": row.hourly_cost_micros / MICROS_PER_USD,
        "created_at": deployment.created_at,
        "started_at": deployment.started_at,
        "runtime_seconds": row.runtime_seconds,
        "total_cost_usd": row.total_cost_micros / MICROS_PER_USD,
        "instances": [
            {
                "id": i.pk,
                "state": i.state,
                "provider": i.provider or None,
                "gpu_type": i.config(deployment)[0],
                "preset": i.config(deployment)[1],
                "hourly_price_usd": i.hourly_price_micros / MICROS_PER_USD,
                "spot": i.spot,
                "cloud_type": i.tier or None,
                "launched_at": i.launched_at,
                "ready_at": i.ready_at,
                "terminated_at": i.terminated_at,
                "failure_reason": i.failure_reason or None,
            }
            for i in instances
        ],
        "rollout": _rollout_out(deployment, live),
    }


def _endpoint_url(request: HttpRequest, deployment: Deployment) -> str:
    if deployment.kind == DeploymentKind.CONTAINER:
        return request.build_absolute_uri(f"/services/{deployment.pk}/")
    return request.build_absolute_uri(f"/api/v1/deployments/{deployment.pk}/{_operation(deployment)}")


def _container_out(request: HttpRequest, deployment: Deployment) -> dict[str, object] | None:
    if deployment.kind != DeploymentKind.CONTAINER:
        return None
    pod = deployment.pod
    return {"image": pod.image, "command": containers.container_command(pod), "port": pod.port_numbers("http")[0],
            "url": _endpoint_url(request, deployment)}  # fmt: skip


def _operation(deployment: Deployment) -> str:
    """What the deployment's engine serves, as its per-deployment route (gpucloud/asgi.py)."""
    return "embeddings" if deployment.model and deployment.model.category == "embedding" else "chat/completions"


def _rollout_out(deployment: Deployment, live: list[Instance]) -> dict[str, object] | None:
    if not deployment.rollout_state:
        return None
    replicas = [i for i in live if i.state != InstanceState.TERMINATING]
    left = sum(not i.runs_config_of(deployment) for i in replicas)
    return {
        "state": deployment.rollout_state,
        "preset": deployment.preset_id,
        "from_preset": deployment.rollout_from_preset_id,
        "replaced": max(0, deployment.rollout_total - left),
        "total": deployment.rollout_total,
        "message": deployment.rollout_message or None,
        "started_at": deployment.rollout_started_at,
    }


_CREATE_DESCRIPTION = (
    "Holds the first minute of each replica (402 when the credit is short) and provisions them after the answer. "
    "409 `no_capacity` when no provider offers the GPU in the region on the terms asked (on-demand, or spot with "
    "`spot: true`; on the `cloud_type` asked), or "
    "none has capacity free by its stored offers. A provider never runs more than its capacity, whatever "
    "creates arrive at once: a replica accepted while others took the capacity waits for it (state "
    "`waiting_for_capacity`, billing nothing) and is placed when some frees."
)


_CONTAINER_DESCRIPTION = (
    "\n\n`kind: container` makes a container endpoint: `image` with `command` (run by `sh -c`) serving HTTP on "
    "`port`, on `replicas` machines of `gpu_type` with `gpu_count` GPUs each, on demand, in `region` (or the "
    "cheapest region with capacity) on `cloud_type` (any: the cheapest tier with a machine free). It answers at "
    "`endpoint_url` (`/services/{id}/`, any method and path under it) with an account key of the organization, "
    "billed per GPU-second of its replicas; POST /deployments/{id}/scale changes its replicas (0 stops it, kept), "
    "DELETE stops it. 400 names the field for settings that cannot run (an image no provider there runs, "
    "`gpu_count` over what one machine has) and for fields of another kind (`model_id`, `preset`, `spot`, "
    "serverless settings); `image`, `command`, `port` and `gpu_count` are 400 on the other kinds."
)


@router.post(
    "/deployments",
    response={201: schemas.DeploymentOut},
    summary="Deploy a catalog model, a serverless endpoint or a container endpoint",
    description=_CREATE_DESCRIPTION + _CONTAINER_DESCRIPTION,
)
@answers(400, 402, 404, 409)
def deployments_create(request: HttpRequest, payload: schemas.DeploymentCreateIn) -> Status[dict[str, object]]:
    principal = api_principal(request)
    _fields_of_the_kind(payload)
    if payload.kind == DeploymentKind.CONTAINER:
        assert payload.image is not None and payload.port is not None  # _fields_of_the_kind says so
        asked = containers.ContainerSettings(
            name=payload.name, description="", flavor_id="", replicas=payload.replicas, image=payload.image,
            command=payload.command or "", port=payload.port, gpu_count=payload.gpu_count or 1,
        )  # fmt: skip
        where = containers.Placement(gpu_type=payload.gpu_type, region=payload.region, cloud_type=payload.cloud_type)
        deployment = containers.container_deploy(principal=principal, asked=asked, where=where)
        return Status(201, deployment_out(request, selectors.deployment_get_for_org(principal.org, deployment.pk)))
    assert payload.model_id is not None and payload.region is not None
    deployment = services.deployment_create(
        principal=principal,
        name=payload.name,
        model_id=payload.model_id,
        gpu_type=payload.gpu_type,
        region=payload.region,
        replicas=payload.replicas,
        preset=payload.preset,
        serverless=services.serverless_options(
            kind=payload.kind, idle_timeout_seconds=payload.idle_timeout_seconds, start_cold=payload.start_cold
        ),
        spot=payload.spot,
        cloud_type=payload.cloud_type,
    )
    return Status(201, deployment_out(request, deployment))


API_KINDS = (DeploymentKind.MODEL, DeploymentKind.SERVERLESS, DeploymentKind.CONTAINER)  # a pod: POST /pods


def _fields_of_the_kind(payload: schemas.DeploymentCreateIn) -> None:
    """400 naming the first field the kind asked requires and lacks, or does not take."""
    if payload.kind not in API_KINDS:
        raise InvalidRequest(f"kind must be {', '.join(API_KINDS[:-1])} or {API_KINDS[-1]}.", param="kind")
    container = payload.kind == DeploymentKind.CONTAINER
    needed = ("image", "port") if container else ("model_id", "region")
    kind_words = "container endpoints (kind: container)" if container else "model and serverless deployments"
    for name in needed:
        if getattr(payload, name) is None:
            raise InvalidRequest(f"{name} is required for {kind_words}.", param=name)
    if container:
        foreign = {name: getattr(payload, name) is not None for name in schemas.NOT_FOR_CONTAINERS}
        foreign |= {"spot": payload.spot, "idle_timeout_seconds": payload.idle_timeout_seconds is not None,
                    "start_cold": payload.start_cold}  # fmt: skip
        wrong = "{} does not apply to container endpoints."
    else:
        foreign = {name: getattr(payload, name) is not None for name in schemas.CONTAINER_ONLY}
        wrong = "{} applies to container endpoints (kind: container)."
    for name, given in foreign.items():
        if given:
            raise InvalidRequest(wrong.format(name), param=name)


@router.get("/deployments", response=list[schemas.DeploymentOut], summary="Your deployments")
def deployments_list(request: HttpRequest) -> list[dict[str, object]]:
    principal = api_principal(request)
    principal.require(CAN_READ, "listing deployments")
    deployments = selectors.deployments_of(principal.org).exclude(kind=DeploymentKind.POD)  # /pods lists those
    return [deployment_out(request, d) for d in deployments]


@router.get("/deployments/{deployment_id}", response=schemas.DeploymentOut, summary="One deployment")
def deployments_get(request: HttpRequest, deployment_id: str) -> dict[str, object]:
    return deployment_out(request, selectors.deployment_get_for_org(api_principal(request).org, deployment_id))


@router.delete("/deployments/{deployment_id}", response=schemas.DeploymentOut, summary="Tear down a deployment")
@answers(409)
def deployments_delete(request: HttpRequest, deployment_id: str) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.deployment_get_for_org(principal.org, deployment_id)
    return deployment_out(request, services.deployment_delete(principal=principal, deployment=deployment))


@router.get("/deployments/{deployment_id}/events", response=list[schemas.DeploymentEventOut], summary="Status history")
def deployments_events(request: HttpRequest, deployment_id: str) -> list[dict[str, object]]:
    deployment = selectors.deployment_get_for_org(api_principal(request).org, deployment_id)
    return [
        {"at": e.at, "instance_id": e.instance_id, "from_status": e.from_status, "to_status": e.to_status,
         "reason": e.reason}
        for e in selectors.events_of(deployment)
    ]  # fmt: skip


@router.get("/deployments/{deployment_id}/logs", response=list[schemas.LogsOut], summary="Engine logs per instance")
@answers(400)
def deployments_logs(
    request: HttpRequest,
    deployment_id: str,
    tail: Annotated[int, Field(json_schema_extra={"minimum": 1, "maximum": TAIL_MAX})] = 200,
) -> list[dict[str, object]]:
    deployment = selectors.deployment_get_for_org(api_principal(request).org, deployment_id)
    if not 1 <= tail <= TAIL_MAX:
        raise InvalidRequest(f"tail must be between 1 and {TAIL_MAX} lines.", param="tail")
    return [{"instance_id": pk, "lines": lines} for pk, lines in log_tails(deployment, tail=tail).items()]


class ServedByTheGateway(ApiError):
    status = 503
    type = "gateway_required"


# What the gateway answers on the per-deployment chat routes (gateway/app.py, wake.py, limits.py,
# relay.py, sessions.py); gpucloud/asgi.py hands it every POST to them, whatever the auth.
_CHAT_ERRORS = frozenset({400, 401, 402, 403, 404, 413, 422, 429, 500, 502, 503, 504})
_CHAT_DESCRIPTION = """\
OpenAI's chat completions (`POST /v1/chat/completions`) pinned to this deployment: the body is
OpenAI's CreateChatCompletionRequest (`model` may be left out); `"stream": true` answers Server-Sent
Events. Served by the gateway, like every /v1 call: metered, held to the deployment's
`concurrency_limit` (429 + Retry-After), a cold serverless deployment is woken (202 + Retry-After +
Location when the request is not held; see the gateway's /v1 operations; 402 when the wake cannot be
paid). The body is checked against OpenAI's request schema first (400 with `param`). Errors are in
OpenAI's error shape.

Authenticate with an account key or a deployment key (`Authorization: Bearer ...`), or with a
signed-in browser session acting in its current organization: a session call needs the
`X-CSRFToken` header matching the `csrftoken` cookie, and an Origin of this site when one is sent
(over HTTPS without an Origin, a Referer of this site); 403 otherwise, before anything is forwarded.
Viewers may not invoke (403); another organization's deployment is 404."""
_RETRY_AFTER = {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying"}
_CHAT_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "description": "CreateChatCompletionRequest"}}},
    },
    "responses": {
        200: {
            "description": "The chat completion (JSON), or its chunks (SSE) when the request streams.",
            "content": {"application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": {}}},
        },
        202: {"headers": {"Retry-After": _RETRY_AFTER, "Location": {"schema": {"type": "string"}}}},
        429: {"headers": {"Retry-After": _RETRY_AFTER}},
        503: {"headers": {"Retry-After": _RETRY_AFTER}},
    },
}


def _served_by_the_gateway() -> HttpResponseBase:
    """Documents a route: gpucloud/asgi.py serves it by the gateway, so Django sees it only when the
    platform runs under another entry point than gpucloud.asgi."""
    raise ServedByTheGateway(
        "Inference is served by the gateway in front of Django; run the platform with "
        "'uvicorn gpucloud.asgi:application' (make run)."
    )


_ROUTE_OPTIONS: dict[str, Any] = {
    "response": {200: None, 202: schemas.WakingOut, _CHAT_ERRORS: schemas.InferenceErrorOut},
    "auth": INFERENCE_AUTH,
    "openapi_extra": _CHAT_OPENAPI,
}
_ORG_SCOPED = (
    "\n\nThe org-scoped form names the organization too: another organization than the key's (or the session's) is 404."
)
_EMBEDDINGS_DESCRIPTION = (
    _CHAT_DESCRIPTION.replace(
        "OpenAI's chat completions (`POST /v1/chat/completions`)", "OpenAI's embeddings (`POST /v1/embeddings`)"
    )
    .replace("CreateChatCompletionRequest", "CreateEmbeddingRequest")
    .replace('; `"stream": true` answers Server-Sent\nEvents', "")
)


@router.post(
    "/deployments/{deployment_id}/chat/completions",
    summary="OpenAI chat completions on this deployment (JSON or SSE); a key or a signed-in session",
    description=_CHAT_DESCRIPTION,
    **_ROUTE_OPTIONS,
)
def deployments_chat(request: HttpRequest, deployment_id: str) -> HttpResponseBase:
    return _served_by_the_gateway()


@router.post(
    "/deployments/{deployment_id}/embeddings",
    summary="OpenAI embeddings on this deployment; a key or a signed-in session",
    description=_EMBEDDINGS_DESCRIPTION,
    **_ROUTE_OPTIONS,
)
def deployments_embeddings(request: HttpRequest, deployment_id: str) -> HttpResponseBase:
    return _served_by_the_gateway()


@router.post(
    "/orgs/{org_id}/deployments/{deployment_id}/chat/completions",
    summary="OpenAI chat completions on this deployment of this organization (JSON or SSE)",
    description=_CHAT_DESCRIPTION + _ORG_SCOPED,
    **_ROUTE_OPTIONS,
)
def deployments_org_chat(request: HttpRequest, org_id: str, deployment_id: str) -> HttpResponseBase:
    return _served_by_the_gateway()


@router.post(
    "/orgs/{org_id}/deployments/{deployment_id}/embeddings",
    summary="OpenAI embeddings on this deployment of this organization",
    description=_EMBEDDINGS_DESCRIPTION + _ORG_SCOPED,
    **_ROUTE_OPTIONS,
)
def deployments_org_embeddings(request: HttpRequest, org_id: str, deployment_id: str) -> HttpResponseBase:
    return _served_by_the_gateway()


METRIC_WINDOWS = {"5m": timedelta(minutes=5), "1h": timedelta(hours=1), "24h": timedelta(hours=24),
                  "7d": timedelta(days=7), "30d": timedelta(days=30)}  # fmt: skip


@router.get("/deployments/{deployment_id}/metrics", response=schemas.MetricsOut, summary="Request metrics and cost")
@answers(400)
def deployments_metrics(
    request: HttpRequest,
    deployment_id: str,
    window: Annotated[str, Field(json_schema_extra={"enum": ["5m", "1h", "24h", "7d", "30d"]})] = "1h",
) -> dict[str, object]:
    deployment = selectors.deployment_get_for_org(api_principal(request).org, deployment_id)
    if window not in METRIC_WINDOWS:
        raise InvalidRequest(f"window must be one of {', '.join(METRIC_WINDOWS)}.", param="window")
    until = timezone.now()
    since = until - METRIC_WINDOWS[window]
    stats = metrics.deployment_window(deployment, since=since, until=until)
    per_million = stats.cost_per_million_tokens_micros
    return {
        **{k: v for k, v in vars(stats).items() if k not in ("gpu_cost_micros", "cost_per_million_tokens_micros")},
        "deployment_id": deployment.pk,
        "window": window,
        "since": since,
        "until": until,
        "replicas_ready": deployment.instances.filter(state=InstanceState.READY).count(),
        "gpu_cost_usd": stats.gpu_cost_micros / MICROS_PER_USD,
        "cost_per_1m_tokens_usd": None if per_million is None else per_million / MICROS_PER_USD,
    }


def _scaling_out(deployment: Deployment) -> dict[str, object]:
    current = scaling.scaling_of(deployment)
    fields = {name: value for name, value in vars(current).items() if name not in ("metric", "target")}
    return {**fields, "target": {"metric": current.metric, "value": current.target}}


@router.get("/deployments/{deployment_id}/scaling", response=schemas.ScalingOut, summary="Autoscaling settings")
def deployments_scaling_get(request: HttpRequest, deployment_id: str) -> dict[str, object]:
    return _scaling_out(selectors.deployment_get_for_org(api_principal(request).org, deployment_id))


@router.patch("/deployments/{deployment_id}/scaling", response=schemas.ScalingOut, summary="Change autoscaling")
@answers(400, 402, 409)
def deployments_scaling_set(request: HttpRequest, deployment_id: str, payload: schemas.ScalingIn) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.deployment_get_for_org(principal.org, deployment_id)
    target = payload.target or schemas.ScalingTargetIn()
    change = scaling.ScalingChange(
        min_replicas=payload.min_replicas, max_replicas=payload.max_replicas, scale_to_zero=payload.scale_to_zero,
        idle_timeout_seconds=payload.idle_timeout_seconds, metric=target.metric, target=target.value,
        cold_start_wait_seconds=payload.cold_start_wait_seconds,
    )  # fmt: skip
    return _scaling_out(scaling.deployment_scaling_set(principal=principal, deployment=deployment, change=change))


@router.post(
    "/deployments/{deployment_id}/scale",
    response=schemas.DeploymentOut,
    summary="Set a container endpoint's replicas",
    description="Container endpoints only (409 for other kinds: their replicas follow PATCH "
    "/deployments/{id}/scaling). 0 stops it (kept, billing nothing); more starts a stopped (or failed) one again or "
    "scales a running one, each new replica's first minute held (402 when the credit is short, nothing changed). "
    "400 outside 0..GPUCLOUD_MAX_REPLICAS; 409 while it is provisioning or stopping (it scales once running or "
    "stopped).",
)
@answers(400, 402, 409)
def deployments_scale(request: HttpRequest, deployment_id: str, payload: schemas.ScaleIn) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.deployment_get_for_org(principal.org, deployment_id)
    containers.container_scale(
        principal=principal, deployment=deployment, replicas=payload.replicas, fields=containers.OURS
    )
    return deployment_out(request, selectors.deployment_get_for_org(principal.org, deployment_id))


@router.patch("/deployments/{deployment_id}/preset", response=schemas.DeploymentOut,
              summary="Apply an inference preset: replicas are replaced one at a time")  # fmt: skip
@answers(400, 402, 409)
def deployments_preset_set(request: HttpRequest, deployment_id: str, payload: schemas.PresetIn) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.deployment_get_for_org(principal.org, deployment_id)
    changed = preset_rollout.deployment_preset_set(principal=principal, deployment=deployment, preset=payload.preset)
    return deployment_out(request, changed)


@router.get("/deployments/{deployment_id}/sla", response=schemas.SlaOut, summary="SLA targets and breaches")
def deployments_sla_get(request: HttpRequest, deployment_id: str) -> dict[str, object]:
    return sla.sla_report(selectors.deployment_get_for_org(api_principal(request).org, deployment_id))


@router.patch("/deployments/{deployment_id}/sla", response=schemas.SlaOut, summary="Set SLA targets")
@answers(400)
def deployments_sla_set(request: HttpRequest, deployment_id: str, payload: schemas.SlaIn) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.deployment_get_for_org(principal.org, deployment_id)
    changes = payload.dict(exclude_unset=True)  # absent: unchanged; null: removed
    return sla.sla_report(sla.deployment_sla_set(principal=principal, deployment=deployment, changes=changes))


@router.get("/gpu-model-configs", response=list[schemas.GpuModelConfigOut], summary="Valid GPU x model pairs")
def gpu_model_configs(request: HttpRequest) -> list[dict[str, object]]:
    offers = list(offers_live())
    configs: list[dict[str, object]] = []
    for model in CatalogModel.objects.curated():
        for gpu in GpuType.objects.filter(vram_gb__gte=model.min_vram_gb):
            matching = [o for o in offers if o.gpu_type == gpu.slug]
            prices = [o.price_per_hour_micros for o in matching]
            configs.append({
                "model_id": model.slug,
                "gpu_type": gpu.slug,
                "regions": sorted({o.region for o in matching if o.available > 0}),
                "hourly_price_usd": min(prices) / MICROS_PER_USD if prices else None,
            })  # fmt: skip
    return configs
