"""A deployment's status changes, each recorded as a DeploymentEvent (its instances' changes come
through deployments.workload), and the status derived from its instances."""

from __future__ import annotations

from django.utils import timezone

from deployments.live import deployment_changed_on_commit
from deployments.models import Deployment, DeploymentEvent, DeploymentKind, DeploymentStatus, Pod
from deployments.volumes import RUNNING_POD_STATUSES, volume_rate_follow
from fleet.models import FINAL_STATES, LIVE_STATES, PRE_LAUNCH_STATES, InstanceState
from webhooks.events import deployment_event_emit, event_emit

# A pod fires these (pod.*) where a deployment fires the keys; the deployment events without a pod
# counterpart (degraded, recovered, scaled, sla_breach) fire nothing for a pod.
POD_EVENTS = {
    "deployment.active": "pod.running",
    "deployment.stopped": "pod.stopped",
    "deployment.preempted": "pod.preempted",
    "deployment.failed": "pod.failed",
}


def deployment_transition(deployment: Deployment, to: DeploymentStatus, reason: str = "") -> None:
    previous = deployment.status
    if previous == to:
        return
    deployment.status = to
    # Once stopped, the deployment still says who or what stopped it ("Stopped by alice@example.com
    # at 10:02 UTC."); the event records the last step ("All instances terminated.").
    if not (previous == DeploymentStatus.STOPPING and to == DeploymentStatus.STOPPED and deployment.status_reason):
        deployment.status_reason = reason
    fields = ["status", "status_reason"]
    if to == DeploymentStatus.ACTIVE and deployment.started_at is None:
        deployment.started_at = timezone.now()
        fields.append("started_at")
    if to in (DeploymentStatus.STOPPED, DeploymentStatus.FAILED):
        deployment.stopped_at = timezone.now()
        fields.append("stopped_at")
    deployment.save(update_fields=fields)
    event = DeploymentEvent.objects.create(deployment=deployment, from_status=previous, to_status=to, reason=reason)
    webhook = _webhook_event_for(previous, to)
    if webhook is not None:
        extra = {"cause": "health"} if webhook == "deployment.recovered" else {}
        workload_event_emit(deployment, webhook, key=event.pk, previous_status=previous, reason=reason, **extra)
    deployment_changed_on_commit(deployment.pk)
    if deployment.kind == DeploymentKind.POD:
        _pod_volume_rate(deployment, to)


def deployment_note(deployment: Deployment, reason: str) -> None:
    """Something happened that leaves its status as it is (a stopped pod terminated): its reason says
    so from now on, and its history records it."""
    deployment.status_reason = reason[:300]
    deployment.save(update_fields=["status_reason"])
    DeploymentEvent.objects.create(
        deployment=deployment, from_status=deployment.status, to_status=deployment.status, reason=reason
    )
    deployment_changed_on_commit(deployment.pk)


def _pod_machine_ended(deployment: Deployment) -> None:
    """A pod's machine ended on its own (nothing launches it again by itself: its container disk went
    with it): failed when it never ran (its image or command did not start), else stopped with its
    volume, to be started again."""
    last = deployment.instances.order_by("-created_at", "-pk").first()
    assert last is not None
    if last.spot and last.ready_at is not None:  # taken back: its preemption stops it (and says so first)
        return
    event = last.events.order_by("-at", "-pk").values_list("reason", flat=True).first()
    why = last.failure_reason or event or "It ended."
    if last.ready_at is None:
        deployment_transition(deployment, DeploymentStatus.FAILED, f"It did not start: {why} See its logs.")
    else:
        deployment_transition(deployment, DeploymentStatus.STOPPED, f"Its machine ended: {why} Start it again.")


def _pod_volume_rate(deployment: Deployment, to: DeploymentStatus) -> None:
    """A pod's volume bills the running price while the pod runs, the idle price otherwise."""
    volume_id = Pod.objects.filter(pk=deployment.pk).values_list("volume_id", flat=True).first()
    if volume_id is not None:
        volume_rate_follow(volume_id, running=to in RUNNING_POD_STATUSES, at=timezone.now())


def workload_event_emit(deployment: Deployment, event_type: str, *, key: object, **data: object) -> None:
    """A deployment's webhook event; a pod's under its pod.* name, its data in the pod's words."""
    if deployment.kind != DeploymentKind.POD:
        deployment_event_emit(deployment, event_type, key=key, **data)
        return
    pod_event = POD_EVENTS.get(event_type)
    if pod_event is None:
        return
    data.pop("previous_status", None)  # a deployment's word (active), not the pod's (running)
    event_emit(
        org_id=deployment.org_id, deployment_id=deployment.pk, event_type=pod_event,
        data={"pod_id": deployment.pk, "name": deployment.name, "status": deployment.pod.status, **data},
        dedupe_key=f"{pod_event}:{deployment.pk}:{key}",
    )  # fmt: skip


def _webhook_event_for(previous: str, to: DeploymentStatus) -> str | None:
    """The webhook a status change fires, if any (webhooks/events.py lists them)."""
    if to == DeploymentStatus.ACTIVE:
        if previous == DeploymentStatus.DEGRADED:
            return "deployment.recovered"
        return None if previous == DeploymentStatus.SCALING else "deployment.active"
    if to == DeploymentStatus.SCALED_TO_ZERO or previous == DeploymentStatus.SCALED_TO_ZERO:
        return "deployment.scaled"  # to zero, or woken to one replica
    return {
        DeploymentStatus.DEGRADED: "deployment.degraded",
        DeploymentStatus.FAILED: "deployment.failed",
        DeploymentStatus.STOPPED: "deployment.stopped",
    }.get(to)


def deployment_refresh_status(deployment: Deployment) -> None:
    """Derive the deployment's status from its instances (called after any instance change)."""
    states = list(deployment.instances.values_list("state", flat=True))
    if deployment.status == DeploymentStatus.STOPPING:
        if all(state in FINAL_STATES for state in states):
            deployment_transition(deployment, DeploymentStatus.STOPPED, "All instances terminated.")
        return
    if not deployment.wants_replicas:
        return
    ready = states.count(InstanceState.READY)
    coming = sum(state in (*LIVE_STATES, *PRE_LAUNCH_STATES) for state in states)
    starting = sum(state in (*PRE_LAUNCH_STATES, InstanceState.LOADING) for state in states)
    if deployment.kind == DeploymentKind.POD and states and coming == 0:
        _pod_machine_ended(deployment)
        return
    if ready >= deployment.desired_replicas:
        deployment_transition(deployment, DeploymentStatus.ACTIVE)
    elif (
        deployment.status == DeploymentStatus.SCALING and ready > 0 and ready + starting >= deployment.desired_replicas
    ):
        return  # the autoscaler's new replicas are on their way: still scaling, not degraded
    elif ready > 0:
        deployment_transition(deployment, DeploymentStatus.DEGRADED, f"{ready} of {deployment.desired_replicas} ready.")
    elif states and all(state == InstanceState.FAILED for state in states):
        failure = deployment.instances.exclude(failure_reason="").order_by("-created_at").first()
        deployment_transition(
            deployment, DeploymentStatus.FAILED, failure.failure_reason if failure else "No instance could start."
        )
    elif deployment.started_at is None:
        if deployment.status != DeploymentStatus.PROVISIONING:
            deployment_transition(deployment, DeploymentStatus.PROVISIONING)
    elif coming == 0:
        deployment_transition(deployment, DeploymentStatus.DEGRADED, "No instance is running; replacing.")
    if deployment.kind == DeploymentKind.POD and deployment.status == DeploymentStatus.PROVISIONING:
        _pod_provisioning_reason(deployment)


def _pod_provisioning_reason(deployment: Deployment) -> None:
    """While a pod provisions, its reason says why when its machine waits (for capacity, or for its
    volume: the machine's event tells which), else what set it provisioning ("Created.", "Started.")."""
    machine = deployment.instances.exclude(state__in=FINAL_STATES).order_by("-created_at", "-pk").first()
    said = deployment.events.order_by("-at", "-pk").values_list("reason", flat=True)
    if machine is not None and machine.state == InstanceState.WAITING_FOR_CAPACITY:
        reason = said.filter(instance=machine).first()
    else:
        reason = said.filter(instance__isnull=True, to_status=DeploymentStatus.PROVISIONING).first()
    if reason is not None and reason[:300] != deployment.status_reason:
        deployment.status_reason = reason[:300]
        deployment.save(update_fields=["status_reason"])
        deployment_changed_on_commit(deployment.pk)
