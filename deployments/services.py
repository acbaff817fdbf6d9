"""Writes of deployments: create (validated, paid for, then provisioned after commit), delete."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from billing.holds import hold_open
from billing.metering import cost_micros
from billing.models import Service
from billing.policy import launch_check
from catalog.hf_models import hf_catalog_model, hf_check_allowed, hf_model_parse, is_hf_id
from catalog.models import CatalogModel, CloudType, GpuType, Offer, Preset, Region, Vendor
from catalog.selectors import offers_for
from deployments.lifecycle import deployment_transition
from deployments.live import deployment_changed_on_commit
from deployments.models import Deployment, DeploymentEvent, DeploymentKind, DeploymentStatus
from deployments.scaling.settings import IDLE_TIMEOUT_BOUNDS
from deployments.selectors import RUNNING_STATUSES
from fleet.models import FINAL_STATES, Instance, InstanceState
from fleet.provisioning import first_minute_hold_key
from fleet.transitions import instance_transition
from gpucloud.core.db import retry_on_deadlock
from gpucloud.core.errors import ApiError, InvalidRequest, NotFound
from gpucloud.core.jobs import enqueue
from gpucloud.core.money import usd_display
from webhooks.events import deployment_event_emit


class NoCapacity(ApiError):
    status = 409
    type = "no_capacity"


def deployment_create(
    *,
    principal: Principal,
    name: str,
    model_id: str,
    gpu_type: str,
    region: str,
    replicas: int = 1,
    preset: str | None = None,
    serverless: Serverless | None = None,
    spot: bool = False,
    cloud_type: str = CloudType.ANY,
    offer: Offer | None = None,
) -> Deployment:
    """Validate, check credit, hold the first minute per replica, and provision after commit.
    Every refusal raises before anything is written or launched. A preset brings its engine
    configuration and must run on its own GPU class. A serverless endpoint scales to zero when idle
    (and with `start_cold` launches nothing until its first request). Replicas run only on the kind
    (spot or on-demand) and the tiers (`CloudType`) asked for. With `offer` (a marketplace rent,
    deployments/rent.py: `gpu_type`, `region`, `spot` and `cloud_type` are its terms) they run on that
    offer, at its provider only."""
    principal.require(CAN_WRITE, "creating deployments")
    if cloud_type not in CloudType.values:
        raise InvalidRequest(f"cloud_type must be one of {', '.join(CloudType.values)}.", param="cloud_type")
    hf = hf_model_parse(model_id, param="model_id") if is_hf_id(model_id) else None
    if hf is not None:
        hf_check_allowed(hf, param="model_id")
    model = CatalogModel.objects.filter(slug=hf.slug if hf else model_id).first()  # an HF id's: made on first use
    if hf is None and model is not None and model.hf_id:  # an HF model's row named by its slug: the same rule
        hf_check_allowed(hf_model_parse(model.hf_id, param="model_id"), param="model_id")
    if model is None and hf is None:
        raise NotFound(f"No model {model_id!r} in the catalog; see GET /api/v1/models.", param="model_id")
    gpu = GpuType.objects.filter(slug=gpu_type).first()
    if gpu is None:
        raise NotFound(f"No GPU type {gpu_type!r}; see GET /api/v1/gpu-types.", param="gpu_type")
    chosen_preset = _preset_for(preset, gpu) if preset else None
    if model is not None:
        title, min_vram_gb = model.name, model.min_vram_gb
    else:  # an HF id used for the first time: its size's estimate, or the GPU chosen as it is (none in its name)
        assert hf is not None
        title, min_vram_gb = model_id, hf.vram_gb or 0
    if gpu.vram_gb < min_vram_gb:
        raise InvalidRequest(
            f"{title} needs {min_vram_gb} GB of VRAM; {gpu.name} has {gpu.vram_gb} GB. "
            "See GET /api/v1/gpu-model-configs.",
            param="gpu_type",
        )
    if hf is not None and gpu.vendor == Vendor.CPU:
        raise InvalidRequest(
            f"{model_id} runs on vLLM, which needs a GPU; this machine's provider runs llama.cpp GGUF models only.",
            param="gpu_type",
        )
    if not Region.objects.filter(slug=region).exists():
        raise NotFound(f"No region {region!r}; see GET /api/v1/regions.", param="region")
    if not 1 <= replicas <= settings.GPUCLOUD_MAX_REPLICAS:
        raise InvalidRequest(f"replicas must be between 1 and {settings.GPUCLOUD_MAX_REPLICAS}.", param="replicas")
    offers = (
        [offer] if offer is not None else offers_for(gpu_type=gpu.slug, region=region, spot=spot, cloud_type=cloud_type)
    )
    kind = ("spot " if spot else "") + ("" if cloud_type == CloudType.ANY else f"{cloud_type}-cloud ")
    if not offers:  # the fleet's state, not the request's fault: an operator may connect a provider
        raise NoCapacity(f"No provider offers {kind}{gpu.name} in {region}.", param="region")
    cold = serverless is not None and serverless.start_cold
    with_capacity = [o for o in offers if o.available > 0]
    if not with_capacity and not cold:  # a cold endpoint needs capacity only when a request wakes it
        raise NoCapacity(f"No {kind}{gpu.name} capacity in {region} right now; try another region or later.")
    price = (with_capacity or offers)[0].price_per_hour_micros  # what the launch will most likely cost
    if not cold:
        launch_check(principal.org)
    with transaction.atomic():
        if model is None:
            assert hf is not None
            model = hf_catalog_model(hf, gpu=gpu, price_per_hour_micros=price)
        deployment = Deployment.objects.create(
            org=principal.org,
            name=(name or model.hf_id or model.slug).strip()[:100],
            kind=DeploymentKind.SERVERLESS if serverless else DeploymentKind.MODEL,
            model=model,
            gpu_type=gpu,
            region_id=region,
            preset=chosen_preset,
            desired_replicas=0 if cold else replicas,
            # Fixed at what was asked until the scaling settings change; serverless may idle to zero.
            min_replicas=0 if serverless else replicas,
            max_replicas=replicas,
            scale_to_zero=serverless is not None,
            idle_timeout_seconds=serverless.idle_timeout_seconds
            if serverless
            else settings.GPUCLOUD_SERVERLESS_IDLE_SECONDS,
            hourly_price_micros=price,
            spot=spot,
            cloud_type=cloud_type,
            created_by=principal.user,
            provider=offer.provider_id if offer is not None else "",
        )
        if cold:
            deployment_transition(
                deployment, DeploymentStatus.SCALED_TO_ZERO, "Created cold: the first request starts it."
            )
            return deployment
        deployment_transition(deployment, DeploymentStatus.PROVISIONING, "Created.")
        for _ in range(replicas):
            instance_add(deployment, price)
    return deployment


@dataclass(frozen=True)
class Serverless:
    idle_timeout_seconds: int
    start_cold: bool = False


def serverless_options(*, kind: str, idle_timeout_seconds: int | None, start_cold: bool) -> Serverless | None:
    """What POST /deployments asked for beyond a plain model deployment; 400 for what does not fit."""
    if kind not in (DeploymentKind.MODEL, DeploymentKind.SERVERLESS):  # a container is made by containers.py
        raise InvalidRequest("kind must be model or serverless.", param="kind")
    if kind == DeploymentKind.MODEL:
        if idle_timeout_seconds is not None or start_cold:
            field = "idle_timeout_seconds" if idle_timeout_seconds is not None else "start_cold"
            raise InvalidRequest(f"{field} applies to serverless deployments (kind: serverless).", param=field)
        return None
    idle = settings.GPUCLOUD_SERVERLESS_IDLE_SECONDS if idle_timeout_seconds is None else idle_timeout_seconds
    low, high = IDLE_TIMEOUT_BOUNDS
    if not low <= idle <= high:
        raise InvalidRequest(f"idle_timeout_seconds must be between {low} and {high}.", param="idle_timeout_seconds")
    return Serverless(idle_timeout_seconds=idle, start_cold=start_cold)


def _preset_for(slug: str, gpu: GpuType) -> Preset:
    found = Preset.objects.select_related("gpu_type").filter(slug=slug).first()
    if found is None:
        names = ", ".join(Preset.objects.values_list("slug", flat=True))
        raise InvalidRequest(f"Unknown preset {slug!r}; use one of {names}, or none.", param="preset")
    if found.gpu_type_id != gpu.slug:
        raise InvalidRequest(
            f"The {found.name} preset runs on {found.gpu_type.name}; choose that GPU or no preset.", param="preset"
        )
    return found


def instance_add(deployment: Deployment, price_per_hour_micros: int) -> Instance:
    """A new replica (or a pod's machine) with its first minute held (402 when the credit is short),
    provisioned after commit."""
    instance = Instance.objects.create(
        deployment=deployment,
        tag=settings.GPUCLOUD_FLEET_TAG,
        api_key=secrets.token_urlsafe(32),
        hourly_price_micros=price_per_hour_micros,
        gpu_type_id=deployment.gpu_type_id,
        preset_id=deployment.preset_id,
    )
    hold_open(
        org=deployment.org,
        amount_micros=max(1, cost_micros(price_per_hour_micros, 60)),
        idempotency_key=first_minute_hold_key(instance.pk),
        description=f"First minute of {deployment.name} ({usd_display(price_per_hour_micros)}/h)",
        service=billed_as(deployment),
    )
    enqueue("fleet.tasks.instance_provision_task", instance.pk)
    return instance


# What each kind of deployment is booked as in the ledger (billing.models.Service): a container
# endpoint is a serverless endpoint of the customer's own image, not a pod (one machine they shell
# into), so its GPU-seconds show under Serverless in spend by service; every other kind is a model.
BILLED_AS = {DeploymentKind.POD: Service.POD, DeploymentKind.CONTAINER: Service.SERVERLESS}


def billed_as(deployment: Deployment) -> Service:
    return BILLED_AS.get(DeploymentKind(deployment.kind), Service.MODEL)


def replica_add(deployment: Deployment) -> Instance:
    """One more replica on the deployment's configuration and price, provisioned after commit
    (InsufficientCredit 402 when its first minute cannot be held)."""
    return instance_add(deployment, deployment.hourly_price_micros)


def replica_add_if_short(deployment: Deployment) -> Instance | None:
    """One more instance when the deployment has fewer than it wants (a loss, a restart) and can pay."""
    deployment.refresh_from_db()
    if not deployment.wants_replicas:
        return None
    live = deployment.instances.exclude(state__in=FINAL_STATES).count()
    if live >= deployment.desired_replicas:
        return None
    try:
        with transaction.atomic():
            return instance_add(deployment, deployment.hourly_price_micros)
    except ApiError as exc:  # e.g. insufficient credit: the deployment stays degraded, with the reason
        deployment_transition(deployment, DeploymentStatus.DEGRADED, f"Could not replace an instance: {exc.message}")
        return None


@retry_on_deadlock
def deployment_delete(*, principal: Principal, deployment: Deployment, reason: str | None = None) -> Deployment:
    """Tear down; billing stops for each instance when its provider confirms termination. `reason` is
    what it says from then on (default: who stopped it, and when)."""
    principal.require(CAN_WRITE, "deleting deployments")
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if deployment.status in (DeploymentStatus.STOPPING, DeploymentStatus.STOPPED):
            return deployment
        deployment_transition(deployment, DeploymentStatus.STOPPING, reason or ended_by(principal))
        for instance in deployment.instances.select_for_update().exclude(state__in=FINAL_STATES).order_by("pk"):
            instance_transition(instance, InstanceState.TERMINATING, "Deployment deleted.")
            enqueue("fleet.tasks.instance_terminate_task", instance.pk)
        if not deployment.instances.exclude(state__in=FINAL_STATES).exists():
            deployment_transition(deployment, DeploymentStatus.STOPPED, "Nothing was running.")
    return deployment


def ended_by(principal: Principal, verb: str = "Stopped") -> str:
    """Who asked, and when: "Stopped by alice@example.com at 10:02 UTC." (pages show times in UTC);
    "Terminated by ..." for a pod ended for good."""
    if principal.user is not None:
        who = principal.user.email
    else:
        who = f"the key {principal.api_key.name!r}" if principal.api_key else "a key"
    return f"{verb} by {who} at {timezone.now():%H:%M} UTC."


@retry_on_deadlock
def deployment_scale_to_zero(*, deployment_id: str, reason: str) -> Deployment:
    """Take every replica down and keep the deployment, billing nothing, until a request wakes it
    (the autoscaler's idle path). Safe to call again."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        if not deployment.wants_replicas:
            return deployment
        deployment.desired_replicas = 0
        deployment.save(update_fields=["desired_replicas"])
        deployment_transition(deployment, DeploymentStatus.SCALED_TO_ZERO, reason)
        for instance in deployment.instances.select_for_update().exclude(state__in=FINAL_STATES).order_by("pk"):
            instance_transition(instance, InstanceState.TERMINATING, reason)
            enqueue("fleet.tasks.instance_terminate_task", instance.pk)
    return deployment


@retry_on_deadlock
def deployment_scale(*, deployment_id: str, replicas: int, reason: str) -> Deployment:
    """Run `replicas` replicas (at least 1; `deployment_scale_to_zero` takes it to none): new ones with
    their first minute held (InsufficientCredit 402 and nothing changed when the org cannot pay), or
    the newest ones terminated. Only a running deployment scales. Every change is an event."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update(of=("self",)).select_related("org").get(pk=deployment_id)
        if deployment.status not in RUNNING_STATUSES or replicas < 1 or replicas == deployment.desired_replicas:
            return deployment
        live = list(
            deployment.instances.select_for_update()
            .exclude(state__in=(*FINAL_STATES, InstanceState.TERMINATING))
            .order_by("created_at", "pk")
        )
        before = deployment.desired_replicas
        for _ in range(replicas - len(live)):
            instance_add(deployment, deployment.hourly_price_micros)
        for instance in reversed(live[replicas:]):  # the newest go first
            instance_transition(instance, InstanceState.TERMINATING, f"Scaled down: {reason}")
            enqueue("fleet.tasks.instance_terminate_task", instance.pk)
        deployment.desired_replicas = replicas
        deployment.save(update_fields=["desired_replicas"])
        event = DeploymentEvent.objects.create(
            deployment=deployment, from_status=deployment.status, to_status=deployment.status,
            reason=f"Scaled {before} → {replicas}: {reason}",
        )  # fmt: skip
        deployment_event_emit(deployment, "deployment.scaled", key=event.pk, previous_replicas=before, reason=reason)
        if replicas > before:
            deployment_transition(deployment, DeploymentStatus.SCALING, f"Adding {replicas - before} replica(s).")
        else:
            deployment_changed_on_commit(deployment.pk)
    return deployment


def deployment_wake(*, deployment_id: str, reason: str = "Woken by a request.") -> Deployment:
    """Start a cold deployment again: one replica, whose first minute (the minimum session cost)
    is held now. Raises InsufficientCredit (402) when the org cannot pay for it, with nothing
    changed. A deployment that is already waking or running is returned as it is, so concurrent
    requests on every gateway process start one wake."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update(of=("self",)).select_related("org").get(pk=deployment_id)
        if not deployment.is_cold:
            return deployment
        launch_check(deployment.org)
        deployment.desired_replicas = 1
        deployment.save(update_fields=["desired_replicas"])
        deployment_transition(deployment, DeploymentStatus.PROVISIONING, reason)
        instance_add(deployment, deployment.hourly_price_micros)
    return deployment


def deployments_stop_for_nonpayment(*, org: Organization) -> int:
    """Stop every running workload of the org (the zero-balance policy). Pods keep their storage
    and can start again; serverless endpoints go cold (a request wakes them once there is credit
    again), container endpoints stop (kept: a PUT of their instances starts them again); other
    deployments are torn down like a delete."""
    stopped = 0
    for deployment in Deployment.objects.filter(org=org, status__in=(*RUNNING_STATUSES, DeploymentStatus.PROVISIONING)):
        if deployment.kind in (DeploymentKind.SERVERLESS, DeploymentKind.CONTAINER):
            deployment_scale_to_zero(deployment_id=deployment.pk, reason="Balance at $0 past the grace period.")
            stopped += 1
            continue
        with transaction.atomic():  # a pod stopped so keeps its volume and can start again (deployments/pods.py)
            deployment_transition(deployment, DeploymentStatus.STOPPING, "Balance at $0 past the grace period.")
            for instance in deployment.instances.exclude(state__in=FINAL_STATES).order_by("pk"):
                instance_transition(instance, InstanceState.TERMINATING, "Balance at $0 past the grace period.")
                enqueue("fleet.tasks.instance_terminate_task", instance.pk)
            if not deployment.instances.exclude(state__in=FINAL_STATES):
                deployment_transition(deployment, DeploymentStatus.STOPPED, "Nothing was running.")
        stopped += 1
    return stopped
