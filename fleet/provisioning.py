"""Launching, readiness and teardown of instances. Each function takes an instance id, is safe
to run again after a crash at any point, and leaves the reconciler a consistent picture:
the provider is asked first and the database records only what the provider confirmed.

Billing follows the instance: the meter starts when the provider accepts the launch (its
first minute is the hold placed at creation) and stops at the provider's confirmed end.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.holds import hold_void
from billing.metering import usage_meter_start, usage_meter_stop, usage_prepay_from_hold
from billing.models import CreditHold, HoldStatus, UsageMeter
from catalog.models import CloudType, Offer, Provider
from catalog.selectors import offers_for
from fleet import drivers
from fleet.engines import engine_healthy
from fleet.models import FINAL_STATES, PRE_LAUNCH_STATES, Instance, InstanceState
from fleet.offers import driver_offer, offers_refresh_soon
from fleet.providers.base import Driver, InstanceSpec, ProviderError, ProviderInstance
from fleet.providers.base import InstanceState as ProviderState
from fleet.transitions import instance_transition
from fleet.workloads import workload
from gpucloud.core.db import retry_on_deadlock
from gpucloud.core.jobs import enqueue


def first_minute_hold_key(instance_id: str) -> str:
    return f"instance:{instance_id}:first-minute"


def _locked(instance_id: str) -> Instance:
    """The instance, locked after its owner (fleet.workloads: owner, then instance, then ledger)."""
    workload().owner_lock(instance_id)
    return Instance.objects.select_for_update(of=("self",)).select_related("deployment").get(pk=instance_id)


# --- launch ---------------------------------------------------------------------------------


def instance_provision(instance_id: str) -> str:
    """Launch on the cheapest offer with capacity (of the spec's provider, when it names one); returns
    'launched', 'waiting', 'failed' or 'skipped'. Raises ProviderError for retryable provider failures
    (the task retries with backoff). What the workload cannot give it yet (a pod's volume the provider
    has no room for) waits like a full offer; what it never can fails it."""
    with transaction.atomic():
        instance = _locked(instance_id)
        if instance.state not in PRE_LAUNCH_STATES:
            return "skipped"
        instance.launch_attempts += 1
        instance.save(update_fields=["launch_attempts"])
    try:
        spec = workload().instance_spec(instance)
    except ProviderError as exc:
        if exc.permanent:
            instance_fail(instance_id, exc.message)
            return "failed"
        if not exc.no_capacity:
            raise
        _wait_for_capacity(instance_id, exc.message)
        return "waiting"
    # The stored offers of the kind and tier asked for (of the one provider a marketplace rent chose),
    # full ones too: their availability may be stale, the provider has the last word.
    tiers = spec.tier or CloudType.ANY
    offers = offers_for(gpu_type=spec.gpu_type, region=spec.region, spot=spec.spot, cloud_type=tiers)
    for offer in (o for o in offers if spec.provider in (None, o.provider_id)):
        try:
            launched = _launch_on(offer, spec)
        except ProviderError as exc:
            if exc.no_capacity:  # its stored availability was wrong: ask it again
                offers_refresh_soon(offer.provider_id)
                continue
            if exc.permanent:
                instance_fail(instance_id, exc.message)
                return "failed"
            raise
        if launched is None:  # the offer went (a refresh no longer lists it)
            continue
        _record_launch(instance_id, launched, offer)
        return "launched"
    _wait_for_capacity(instance_id, f"No capacity for {spec.gpu_type} in {spec.region} right now; retrying.")
    return "waiting"


def _wait_for_capacity(instance_id: str, reason: str) -> None:
    """Nothing to launch on now: it waits (billing nothing), and the reconciler tries it again."""
    with transaction.atomic():
        instance = _locked(instance_id)
        if instance.state in PRE_LAUNCH_STATES:
            instance_transition(instance, InstanceState.WAITING_FOR_CAPACITY, reason)
            workload().owner_refresh(instance)


def _launch_on(offer: Offer, spec: InstanceSpec) -> ProviderInstance | None:
    """Launch on `offer` with its row locked, so that the provider's capacity check and the launch
    that takes the capacity are one step: two launches counted the same free slot and both started
    (issue 15 §9: two creates 0.1 s apart put three engines on two slots). Launches on one offer wait
    for each other, each as long as its driver's launch call (bounded by the driver's timeouts); the
    next one's check sees what the previous one started. None when the offer is gone."""
    with transaction.atomic():
        locked = Offer.objects.select_for_update(of=("self",)).filter(pk=offer.pk).first()
        if locked is None:
            return None
        return drivers.driver_of(offer.provider).launch(spec, driver_offer(locked))


@retry_on_deadlock
def _record_launch(instance_id: str, launched: ProviderInstance, offer: Offer) -> None:
    provider = offer.provider_id
    with transaction.atomic():
        # A launch takes capacity: for the local and Kubernetes providers it is this platform's own
        # machines, so nothing but this refresh (and the next one at a confirmed end) keeps their stored
        # availability true for the next deploy; for a cloud it costs one offers call per launch.
        offers_refresh_soon(provider)
        instance = _locked(instance_id)
        started = launched.started_at or timezone.now()
        fields: dict[str, Any] = {
            "provider": provider,
            "provider_instance_id": launched.provider_instance_id,
            "endpoint_url": launched.endpoint_url or "",
            "hourly_price_micros": offer.price_per_hour_micros,
            "hourly_cost_micros": offer.cost_per_hour_micros,
            "spot": offer.spot,
            "tier": offer.tier,
            "launched_at": started,
        }
        if instance.state in PRE_LAUNCH_STATES:
            instance_transition(instance, InstanceState.LOADING, f"Launched on {provider}.", **fields)
            _billing_start(instance, started)
            workload().owner_refresh(instance)
            enqueue("fleet.tasks.instance_wait_ready_task", instance_id)
        else:  # deleted while the provider was launching: bill what ran, then take it down
            instance_transition(instance, InstanceState(instance.state), **fields)
            _billing_start(instance, started)
            enqueue("fleet.tasks.instance_terminate_task", instance_id)


def _billing_start(instance: Instance, started_at: datetime) -> None:
    subject = workload().billing_subject(instance)
    meter = usage_meter_start(
        org=subject.org,
        meter_key=instance.pk,
        service=subject.service,
        description=subject.description,
        hourly_price_micros=instance.hourly_price_micros,
        started_at=started_at,
    )
    hold = CreditHold.objects.filter(idempotency_key=first_minute_hold_key(instance.pk)).first()
    if hold is not None:
        usage_prepay_from_hold(meter, hold.pk)


@retry_on_deadlock
def instance_stopping(instance_id: str, reason: str) -> None:
    """Out of service and to be terminated (it stopped at the provider): TERMINATING with the reason."""
    with transaction.atomic():
        instance = _locked(instance_id)
        if instance.state in FINAL_STATES or instance.state == InstanceState.TERMINATING:
            return
        instance_transition(instance, InstanceState.TERMINATING, reason, failure_reason=reason[:500])
        workload().owner_refresh(instance)


@retry_on_deadlock
def instance_fail(instance_id: str, reason: str) -> None:
    """A permanent failure before anything ran: nothing to bill, the hold goes back."""
    with transaction.atomic():
        instance = _locked(instance_id)
        if instance.state in FINAL_STATES:
            return
        instance_transition(instance, InstanceState.FAILED, reason, failure_reason=reason[:500])
        _release_hold(instance.pk)
        workload().owner_refresh(instance)


def _release_hold(instance_id: str) -> None:
    hold = CreditHold.objects.filter(idempotency_key=first_minute_hold_key(instance_id)).first()
    if hold is not None and hold.status == HoldStatus.OPEN:
        hold_void(hold_id=hold.pk)


# --- readiness ------------------------------------------------------------------------------


CRASH_LOOP_RESTARTS = 3  # restarts without ever answering health before a replica counts as crash-looping
WAITING_STATES = (InstanceState.LOADING, InstanceState.CRASH_LOOPING)


def instance_check_ready(instance_id: str) -> bool | None:
    """True when ready, None while loading (or crash-looping: it may still come up), False when it
    will not become ready."""
    instance = Instance.objects.select_related("deployment").get(pk=instance_id)
    if instance.state == InstanceState.READY:
        return True
    if instance.state not in WAITING_STATES:
        return False
    if (ready := _ready(instance)) is not None:
        with transaction.atomic():
            instance = _locked(instance_id)
            if instance.state in WAITING_STATES:
                instance_transition(instance, InstanceState.READY, ready, ready_at=timezone.now())
                workload().owner_refresh(instance)
        return True
    driver = drivers.driver(instance.provider)
    status = driver.status(instance.provider_instance_id)
    if status.state == ProviderState.TERMINATED:
        instance_gone(instance_id, status.ended_at, "The engine exited while loading.")
        return False
    if status.restarts >= CRASH_LOOP_RESTARTS and instance.state == InstanceState.LOADING:
        _crash_looping(instance_id, status.restarts, _last_lines(driver, instance.provider_instance_id))
    assert instance.launched_at is not None
    if (timezone.now() - instance.launched_at).total_seconds() > settings.GPUCLOUD_READY_TIMEOUT_SECONDS:
        with transaction.atomic():
            instance = _locked(instance_id)
            reason = f"Not healthy after {settings.GPUCLOUD_READY_TIMEOUT_SECONDS} s; stopping it."
            instance_transition(instance, InstanceState.TERMINATING, reason, failure_reason=reason)
        instance_terminate(instance_id)
        return False
    return None


def _crash_looping(instance_id: str, restarts: int, tail: list[str]) -> None:
    """The engine keeps restarting without answering: say so (the owner sees it with the engine's last
    lines); it stays billed while the machine runs, and the ready timeout still ends it."""
    reason = f"The engine restarted {restarts} times without becoming healthy."
    if tail:
        reason += " Last output: " + " | ".join(line.strip() for line in tail)[-300:]
    with transaction.atomic():
        instance = _locked(instance_id)
        if instance.state == InstanceState.LOADING:
            instance_transition(instance, InstanceState.CRASH_LOOPING, reason, failure_reason=reason[:500])
            workload().owner_refresh(instance)


def _last_lines(driver: Driver, provider_instance_id: str) -> list[str]:
    """The engine's last lines, where the provider has logs (a failure to read them is no reason to fail)."""
    try:
        return driver.logs(provider_instance_id, tail=5)
    except ProviderError:
        return []


def _ready(instance: Instance) -> str | None:
    """Why the instance is ready (its event's reason), or None while it is not: a built-in engine answers
    GET /health; a container of the owner's own (a pod) is up when its provider says it runs (it may
    serve nothing over HTTP)."""
    if workload().instance_spec(instance).engine == "container":
        running = drivers.driver(instance.provider).status(instance.provider_instance_id).state == ProviderState.RUNNING
        return "Running at its provider." if running else None
    return "Engine healthy." if _healthy(instance) else None


def _healthy(instance: Instance) -> bool:
    if not instance.endpoint_url:  # some providers assign the address after the launch call returns
        try:
            instance.endpoint_url = drivers.driver(instance.provider).endpoint(instance.provider_instance_id)
        except ProviderError:
            # No address yet (a VM still booting; Vast publishes the engine's port once the container
            # runs), or none ever: not healthy; the status check that follows tells which.
            return False
        Instance.objects.filter(pk=instance.pk).update(endpoint_url=instance.endpoint_url)
    return engine_healthy(instance.endpoint_url)


# --- teardown -------------------------------------------------------------------------------


def instance_terminate(instance_id: str) -> bool:
    """Ask the provider to terminate and record it once the provider confirms; True when confirmed.
    Raises ProviderError for retryable failures."""
    instance = Instance.objects.select_related("deployment").get(pk=instance_id)
    if instance.state in FINAL_STATES:
        return True
    if not instance.provider_instance_id:  # never launched (or launch not recorded yet)
        if instance.state in PRE_LAUNCH_STATES or instance.state == InstanceState.TERMINATING:
            with transaction.atomic():
                instance = _locked(instance_id)
                if not instance.provider_instance_id and instance.state not in FINAL_STATES:
                    instance_transition(instance, InstanceState.TERMINATED, "Stopped before launch.")
                    _release_hold(instance.pk)
                    workload().owner_refresh(instance)
        return True
    driver = drivers.driver(instance.provider)
    driver.terminate(instance.provider_instance_id)
    status = driver.status(instance.provider_instance_id)
    if status.state != ProviderState.TERMINATED:
        return False
    instance_gone(instance_id, status.ended_at, "Terminated.")
    return True


@retry_on_deadlock
def instance_gone(instance_id: str, ended_at: datetime | None, reason: str) -> None:
    """The provider confirms the instance no longer exists: stop billing at its end, record it."""
    with transaction.atomic():
        instance = _locked(instance_id)
        if instance.state in FINAL_STATES:
            return
        end = min(ended_at or timezone.now(), timezone.now())
        if instance.launched_at:
            end = max(end, instance.launched_at)
        instance_transition(instance, InstanceState.TERMINATED, reason, terminated_at=end)
        meter = UsageMeter.objects.filter(meter_key=instance.pk).first()
        if meter is not None:
            usage_meter_stop(meter, end)
        _release_hold(instance.pk)
        workload().owner_refresh(instance)
        if instance.provider:  # the capacity it held is free again (see _record_launch)
            offers_refresh_soon(instance.provider)


def local_instances_stop_all() -> int:
    """Stop every engine this machine runs for the platform (the embedded server's shutdown):
    billing stops at the confirmed end; deployments keep wanting their replicas, so the next
    start of the platform launches them again."""
    stopped = 0
    for instance_id in (
        Instance.objects.filter(provider="local").exclude(state__in=FINAL_STATES).values_list("pk", flat=True)
    ):
        with transaction.atomic():
            instance = _locked(instance_id)
            if instance.state in FINAL_STATES:
                continue
            instance_transition(instance, InstanceState.TERMINATING, "The platform is shutting down.")
        try:
            stopped += instance_terminate(instance_id)
        except ProviderError:
            continue  # the reconciler finishes it on the next start
    if not Provider.objects.filter(slug="local").exists():  # no catalog loaded: nothing can have run
        return stopped
    local = drivers.driver("local")
    for stray in local.list_instances(settings.GPUCLOUD_FLEET_TAG):  # launched, never recorded
        local.terminate(stray.provider_instance_id)
    return stopped
