"""Changing a running deployment's preset (reference/000 "Inference Presets") by replacing its
replicas one at a time, with a surge of one.

1. The deployment takes the preset, its GPU class and the price of that GPU's cheapest offer at
   once. Every replica records the GPU class and preset it runs, so those still on the previous
   ones are known (`Instance.runs_config_of`); each is billed at its own offer's price.
2. One new replica is launched. Once it is ready (serving), one old replica leaves routing
   (draining: still running and billed, no longer picked by the gateway once its route cache
   expires) and is terminated when its requests are over. Then the next new one, until none of
   the old configuration remain. So the deployment never has fewer ready replicas than before,
   nor more than one machine beyond its replicas.
3. A new replica that cannot start (no capacity, a provider failure, not healthy in time) stops the
   rollout: state `failed` with the reason; the old replicas keep serving (a draining one goes back
   into routing) and applying the preset again resumes it.

Every step is taken by `rollout_advance` under the deployment's row lock from what the database
says, so running it twice, or from the rollout task and the reconciler at once, takes each step
once. A rollout owns the replica count while it runs: the autoscaler leaves the deployment alone
and the reconciler advances the rollout instead of converging its replicas.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime

import redis
from django.db import transaction
from django.utils import timezone

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from billing.policy import launch_check
from catalog.models import Preset
from catalog.selectors import offers_for
from deployments import traffic
from deployments.lifecycle import deployment_refresh_status
from deployments.live import deployment_changed_on_commit
from deployments.models import Deployment, DeploymentEvent, DeploymentStatus, RolloutState
from deployments.selectors import RUNNING_STATUSES
from deployments.services import NoCapacity, replica_add
from deployments.traffic import FLUSH_SECONDS, ROUTE_CACHE_SECONDS
from fleet.models import FINAL_STATES, PRE_LAUNCH_STATES, Instance, InstanceState
from fleet.transitions import instance_transition
from gpucloud.core.errors import ApiError, Conflict, InvalidRequest
from gpucloud.core.jobs import enqueue
from gpucloud.core.money import usd_display

logger = logging.getLogger(__name__)

# A replica out of routing may still be picked by a gateway process until that process's route
# cache expires, and a request it starts there reaches the shared counters one flush later.
DRAIN_SETTLE_SECONDS = ROUTE_CACHE_SECONDS + FLUSH_SECONDS + 1.0
# The gateway counts requests in flight per deployment, not per replica: under steady traffic a
# draining replica is given this long (any normal answer, streams included) before it stops.
DRAIN_TIMEOUT_SECONDS = 120.0
STARTING_STATES = (*PRE_LAUNCH_STATES, InstanceState.LOADING)


class Step(enum.StrEnum):
    """What `rollout_advance` did or waits for."""

    IDLE = "idle"  # no rollout is running
    WAITING = "waiting"  # a new replica is on its way
    DRAINING = "draining"  # an old replica is finishing its requests: only time moves it on
    LAUNCHED = "launched"
    DONE = "done"
    FAILED = "failed"


# --- the request -----------------------------------------------------------------------------


def deployment_preset_set(*, principal: Principal, deployment: Deployment, preset: str | None) -> Deployment:
    """Apply `preset` to a running deployment by a rolling replacement of its replicas (a deployment
    scaled to zero just takes it: its next wake runs it). The preset it already runs is a no-op,
    unless replicas still run another (a failed rollout): then the rollout resumes.

    Refusals raise before anything is written: 403 (viewers), 409 (not running, a rollout in
    progress, no capacity for the preset's GPU now), 400 naming `preset` (missing, unknown, too
    small for the model, not offered in the region), 402 (the first replica's minute cannot be held).
    """
    principal.require(CAN_WRITE, "changing the preset")
    _check_can_roll(deployment)
    chosen = _preset_named(preset, deployment)
    if _up_to_date(deployment, chosen):
        return deployment
    cold = deployment.status == DeploymentStatus.SCALED_TO_ZERO
    price = _offer_price(chosen, deployment, launching=not cold)
    if not cold:
        launch_check(deployment.org)
    with transaction.atomic():
        locked = _locked(deployment.pk)
        _check_can_roll(locked)
        if _up_to_date(locked, chosen):
            return locked
        if (locked.status == DeploymentStatus.SCALED_TO_ZERO) != cold:
            raise Conflict("The deployment started or stopped meanwhile; apply the preset again.", param="preset")
        if cold:
            _switch(locked, chosen, price, replicas=0)
            _end(locked, RolloutState.DONE, f"Preset set to {chosen.name} while scaled to zero; the next wake runs it.")
        else:
            _rollout_start(locked, chosen, price)
    return locked


def _rollout_start(deployment: Deployment, preset: Preset, price: int) -> None:
    """Switch the (locked) deployment to the preset and launch the first new replica; a refusal of
    that launch (402) raises, and the caller's transaction undoes the switch."""
    _record_configs(deployment)
    target = (preset.gpu_type_id, preset.slug)
    resuming = deployment.config == target  # a failed rollout to the same preset
    stale = [i for i in _replicas(deployment) if i.config(deployment) != target]
    _switch(deployment, preset, price, replicas=len(stale), keep_from=resuming)
    verb = "Resuming the rollout" if resuming else "Rolling"
    _note(deployment, f"{verb} to preset {preset.name} ({preset.gpu_type.name}, {usd_display(price)}/h per replica): "
                      f"replacing {len(stale)} replica(s) one at a time.")  # fmt: skip
    _step(deployment, timezone.now(), strict=True)


def _check_can_roll(deployment: Deployment) -> None:
    if deployment.model_id is None:
        raise Conflict("Only model deployments take an inference preset.")
    if deployment.is_rolling:
        left = sum(not i.runs_config_of(deployment) for i in _replicas(deployment))
        raise Conflict(
            f"A rollout to preset {deployment.preset_id} is in progress "
            f"({max(0, deployment.rollout_total - left)} of {deployment.rollout_total} replicas replaced); "
            "try again when it has finished."
        )
    if deployment.status not in (*RUNNING_STATUSES, DeploymentStatus.SCALED_TO_ZERO):
        if deployment.status in (DeploymentStatus.PENDING, DeploymentStatus.PROVISIONING):
            raise Conflict(f"The deployment is {deployment.status}; apply a preset once it is running.")
        raise Conflict(f"The deployment is {deployment.status}; deploy it again to change its preset.")


def _preset_named(slug: str | None, deployment: Deployment) -> Preset:
    names = ", ".join(Preset.objects.values_list("slug", flat=True))
    if not slug:
        raise InvalidRequest(f"preset is required: one of {names}.", param="preset")
    found = Preset.objects.select_related("gpu_type").filter(slug=slug).first()
    if found is None:
        raise InvalidRequest(f"Unknown preset {slug!r}; use one of {names}.", param="preset")
    model = deployment.model
    assert model is not None
    if found.gpu_type.vram_gb < model.min_vram_gb:
        raise InvalidRequest(
            f"{model.name} needs {model.min_vram_gb} GB of VRAM; the {found.name} preset runs on "
            f"{found.gpu_type.name} with {found.gpu_type.vram_gb} GB.",
            param="preset",
        )
    return found


def _up_to_date(deployment: Deployment, preset: Preset) -> bool:
    target = (preset.gpu_type_id, preset.slug)
    return deployment.config == target and all(i.config(deployment) == target for i in _replicas(deployment))


def _offer_price(preset: Preset, deployment: Deployment, *, launching: bool) -> int:
    """The price per replica-hour of the preset's GPU in the deployment's region: the cheapest offer
    with capacity when a replica launches now, else the cheapest offer."""

    offers = offers_for(
        gpu_type=preset.gpu_type_id, region=deployment.region_id or "", spot=deployment.spot,
        cloud_type=deployment.cloud_type,
    )  # fmt: skip
    gpu = preset.gpu_type.name
    if not offers:
        raise InvalidRequest(
            f"The {preset.name} preset runs on {gpu}, which no provider offers in {deployment.region_id}.",
            param="preset",
        )
    if not launching:
        return offers[0].price_per_hour_micros
    with_capacity = [o for o in offers if o.available > 0]
    if not with_capacity:
        raise NoCapacity(f"No {gpu} capacity in {deployment.region_id} for the {preset.name} preset right now; "
                         "nothing changed. Try again later.")  # fmt: skip
    return with_capacity[0].price_per_hour_micros


def _locked(deployment_id: str) -> Deployment:
    return Deployment.objects.select_for_update().get(pk=deployment_id)


def _replicas(deployment: Deployment, *, lock: bool = False) -> list[Instance]:
    """The instances that count as its replicas: not over, not on their way out."""
    instances = deployment.instances.select_for_update() if lock else deployment.instances.all()
    return list(instances.exclude(state__in=(*FINAL_STATES, InstanceState.TERMINATING)).order_by("created_at", "pk"))


def _record_configs(deployment: Deployment) -> None:
    """Rows that do not record what they run run the deployment's configuration: record it before
    the deployment's changes."""
    deployment.instances.filter(gpu_type__isnull=True).update(
        gpu_type_id=deployment.gpu_type_id, preset_id=deployment.preset_id
    )


def _switch(deployment: Deployment, preset: Preset, price: int, *, replicas: int, keep_from: bool = False) -> None:
    if not keep_from:
        deployment.rollout_from_preset_id = deployment.preset_id
    deployment.preset, deployment.gpu_type_id, deployment.hourly_price_micros = preset, preset.gpu_type_id, price
    deployment.rollout_state, deployment.rollout_total = RolloutState.ROLLING, replicas
    deployment.rollout_started_at, deployment.rollout_message = timezone.now(), ""
    deployment.save(update_fields=["preset", "gpu_type", "hourly_price_micros", "rollout_state", "rollout_total",
                                   "rollout_started_at", "rollout_message", "rollout_from_preset"])  # fmt: skip


# --- the steps -------------------------------------------------------------------------------


def rollout_advance(*, deployment_id: str, now: datetime | None = None) -> Step:
    """Take every step of the deployment's rollout that can be taken now; safe to run again at any
    time (a step is decided under the deployment's row lock from the instances' states)."""
    now = now or timezone.now()
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().filter(pk=deployment_id).first()
        if deployment is None or not deployment.is_rolling:
            return Step.IDLE
        if not deployment.wants_replicas:
            _end(deployment, RolloutState.FAILED, f"Stopped: the deployment is {deployment.status}.")
            return Step.FAILED
        return _step(deployment, now, strict=False)


def _step(deployment: Deployment, now: datetime, *, strict: bool) -> Step:
    failure = _new_replica_failure(deployment)
    if failure:
        return _fail(deployment, failure)
    replicas = _replicas(deployment, lock=True)
    new = [i for i in replicas if i.runs_config_of(deployment)]
    old = [i for i in replicas if not i.runs_config_of(deployment)]
    for instance in old:
        if instance.state == InstanceState.DRAINING and _drained(deployment, instance, now):
            _retire(deployment, instance, "Drained: replaced by the new configuration.")
        elif instance.state not in (InstanceState.READY, InstanceState.DRAINING):
            _retire(deployment, instance, "Not serving: replaced by the new configuration without a drain.")
    old = [i for i in old if i.state in (InstanceState.READY, InstanceState.DRAINING)]
    if not old:
        total = deployment.rollout_total
        _end(deployment, RolloutState.DONE, f"Rolled to preset {_name(deployment)}: {total} of {total} replaced.")
        return Step.DONE
    if any(i.state == InstanceState.DRAINING for i in old):
        return Step.DRAINING
    if any(i.state in STARTING_STATES for i in new):
        return Step.WAITING
    ready_new = [i for i in new if i.state == InstanceState.READY]
    position = max(1, deployment.rollout_total - len(old) + 1)  # the replica being replaced now
    if len(ready_new) + len(old) > deployment.desired_replicas:  # one more is serving than wanted: one old goes
        _drain(deployment, old[0], now)
        ready = f"replica {position} of {deployment.rollout_total} ready" if ready_new else "a surplus replica"
        _note(deployment, f"Rolling to preset {_name(deployment)}: {ready}; draining {old[0].pk}.")
        return Step.DRAINING
    return _launch(deployment, position, strict=strict)


def _launch(deployment: Deployment, position: int, *, strict: bool) -> Step:

    try:
        with transaction.atomic():
            added = replica_add(deployment)
    except ApiError as exc:  # no credit for its first minute
        if strict:
            raise
        return _fail(deployment, f"a new replica could not be launched: {exc.message}")
    gpu = deployment.gpu_type.name if deployment.gpu_type else "?"
    _note(deployment, f"Rolling to preset {_name(deployment)}: launching replica {position} of "
                      f"{deployment.rollout_total} ({added.pk}) on {gpu}.")  # fmt: skip
    return Step.LAUNCHED


def _new_replica_failure(deployment: Deployment) -> str | None:
    """Why a replica launched by this rollout could not start, if one could not."""
    assert deployment.rollout_started_at is not None
    launched = deployment.instances.filter(created_at__gte=deployment.rollout_started_at).order_by("created_at", "pk")
    for instance in launched:
        if not instance.runs_config_of(deployment):
            continue
        if instance.state == InstanceState.WAITING_FOR_CAPACITY:
            gpu = deployment.gpu_type.name if deployment.gpu_type else "the GPU"
            return f"no {gpu} capacity in {deployment.region_id} for a new replica"
        if instance.state in (InstanceState.FAILED, InstanceState.CRASH_LOOPING) or (
            instance.state in (InstanceState.TERMINATING, InstanceState.TERMINATED) and instance.ready_at is None
        ):
            return f"the new replica {instance.pk} did not start: {_why(instance)}"
    return None


def _why(instance: Instance) -> str:
    if instance.failure_reason:
        return instance.failure_reason
    last = instance.events.exclude(reason="").order_by("-at", "-pk").first()
    return last.reason if last else f"it is {instance.state}"


def _drained(deployment: Deployment, instance: Instance, now: datetime) -> bool:
    if instance.drain_started_at is None:  # not drained by a rollout: its drain starts now
        instance.drain_started_at = now
        instance.save(update_fields=["drain_started_at"])
    waited = (now - instance.drain_started_at).total_seconds()
    if waited < DRAIN_SETTLE_SECONDS:
        return False
    return waited >= DRAIN_TIMEOUT_SECONDS or _in_flight(instance.pk) == 0


def _in_flight(instance_id: str) -> int | None:
    """Requests in flight on the replica across gateway processes; None when unknown."""
    try:
        return traffic.store().in_flight().get(instance_id, 0)
    except redis.RedisError:  # the counter store is away: wait for the drain timeout instead
        logger.warning("in-flight counts unavailable; %s drains until its timeout", instance_id, exc_info=True)
        return None


def _drain(deployment: Deployment, instance: Instance, now: datetime) -> None:
    reason = f"Replaced by preset {_name(deployment)}: out of routing, finishing its requests."
    instance_transition(instance, InstanceState.DRAINING, reason, drain_started_at=now)


def _retire(deployment: Deployment, instance: Instance, reason: str) -> None:
    instance_transition(instance, InstanceState.TERMINATING, reason)
    enqueue("fleet.tasks.instance_terminate_task", instance.pk)
    left = sum(not i.runs_config_of(deployment) for i in _replicas(deployment))
    total = deployment.rollout_total
    _note(deployment, f"Rolling to preset {_name(deployment)}: {instance.pk} stopping "
                      f"({max(0, total - left)} of {total} replaced).")  # fmt: skip


def _fail(deployment: Deployment, reason: str) -> Step:
    """Stop the rollout: a new replica still waiting to launch is dropped (its hold goes back), a
    draining old one serves again, the rest stay as they are."""
    serving = 0
    for instance in _replicas(deployment, lock=True):
        if instance.runs_config_of(deployment):
            if instance.state in PRE_LAUNCH_STATES:
                instance_transition(instance, InstanceState.TERMINATING, "The rollout stopped.")
                enqueue("fleet.tasks.instance_terminate_task", instance.pk)
            continue
        if instance.state == InstanceState.DRAINING:
            instance_transition(instance, InstanceState.READY, "The rollout stopped: serving again.",
                                drain_started_at=None)  # fmt: skip
        serving += instance.state == InstanceState.READY
    _end(deployment, RolloutState.FAILED, f"Rolling to preset {_name(deployment)} stopped: {reason.rstrip('.')}. "
                                          f"{serving} replica(s) on the previous configuration keep serving; "
                                          "apply the preset again to retry.")  # fmt: skip
    deployment_refresh_status(deployment)
    return Step.FAILED


def _end(deployment: Deployment, state: RolloutState, message: str) -> None:
    deployment.rollout_state = state
    deployment.save(update_fields=["rollout_state"])
    _note(deployment, message)


def _note(deployment: Deployment, message: str) -> None:
    """A step on the deployment's timeline, and the rollout's last word."""
    deployment.rollout_message = message[:500]
    deployment.save(update_fields=["rollout_message"])
    DeploymentEvent.objects.create(
        deployment=deployment, from_status=deployment.status, to_status=deployment.status, reason=message[:500]
    )
    deployment_changed_on_commit(deployment.pk)


def _name(deployment: Deployment) -> str:
    return deployment.preset.name if deployment.preset else "none"


def rolling_deployment_of(instance_id: str) -> str | None:
    """The id of the instance's deployment when that deployment is rolling."""
    return (
        Deployment.objects.filter(instances=instance_id, rollout_state=RolloutState.ROLLING)
        .values_list("pk", flat=True)
        .first()
    )
