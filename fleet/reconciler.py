"""The safety net: compare each provider's tagged instances with the database and fix the
difference. No leaked machine keeps billing the operator, no lost machine keeps billing the user.

- Tagged at the provider, unknown to the database (or known as terminated/failed): terminate it.
- Tagged at the provider, still pre-launch in the database (a worker died between the provider's
  answer and the commit): provision again, which adopts it (launch is idempotent per instance).
- Live in the database, gone at the provider (past the launch grace period): record it as
  terminated at the provider's end time and replace it if the deployment still wants it. A spot
  instance gone is a preemption: the owner is told (an event and a webhook) as it is replaced.
- Live in the database, stopped at the provider (EXITED): terminate it (it may still cost), then
  replace it; a spot one stopped is a preemption too.
- Terminating in the database: terminate again until the provider confirms.
- Stuck pre-launch or loading: run the step again.

- Last, the workloads converge (fleet.workloads): owners that want more instances than they have get
  them, and preset rollouts take their next step (if their task was lost, this finishes it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from catalog.models import Provider
from fleet import drivers, provisioning
from fleet.models import FINAL_STATES, LIVE_STATES, PRE_LAUNCH_STATES, Instance, InstanceState
from fleet.providers.base import InstanceState as ProviderState
from fleet.providers.base import ProviderError
from fleet.workloads import workload
from gpucloud.core.jobs import enqueue


@dataclass
class ReconcileReport:
    reaped: list[str] = field(default_factory=list)  # provider ids terminated as orphans
    adopted: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)  # spot instances the provider took back
    confirmed: list[str] = field(default_factory=list)  # terminations confirmed
    replaced: list[str] = field(default_factory=list)  # new instances for owners short of replicas
    rolled: dict[str, str] = field(default_factory=dict)  # owners rolling to a new configuration: each one's step
    errors: list[str] = field(default_factory=list)


def fleet_reconcile(*, now: datetime | None = None) -> ReconcileReport:
    now = now or timezone.now()
    report = ReconcileReport()
    for provider in Provider.objects.filter(enabled=True):
        try:
            _reconcile_provider(provider.slug, now, report)
        except ProviderError as exc:
            report.errors.append(f"{provider.slug}: {exc.message}")
    _retry_stuck(now, report)
    converged = workload().converge()
    report.replaced, report.rolled = converged.replaced, converged.rolled
    return report


def _reconcile_provider(slug: str, now: datetime, report: ReconcileReport) -> None:
    driver = drivers.driver(slug)
    listed = {i.provider_instance_id: i for i in driver.list_instances(settings.GPUCLOUD_FLEET_TAG)}
    for provider_id, seen in listed.items():
        instance = (
            Instance.objects.filter(provider=slug, provider_instance_id=provider_id).first()
            or Instance.objects.filter(pk=seen.instance_id).first()
        )
        if instance is not None and instance.state in PRE_LAUNCH_STATES:
            provisioning.instance_provision(instance.pk)  # adopts: the driver returns the running one
            report.adopted.append(instance.pk)
        elif instance is None or instance.state in FINAL_STATES:
            driver.terminate(provider_id)
            report.reaped.append(provider_id)
            if instance is not None:
                workload().instance_noted(instance, f"Reaped a stray provider instance {provider_id}.")
    grace = timedelta(seconds=settings.GPUCLOUD_LAUNCH_GRACE_SECONDS)
    for instance in Instance.objects.filter(provider=slug, state__in=LIVE_STATES).select_related("deployment"):
        at_provider = listed.get(instance.provider_instance_id)
        if at_provider is not None and at_provider.state != ProviderState.EXITED:
            continue
        # The grace covers a cloud's listing lagging behind a launch and a machine booting through
        # a stopped state: in it, only the provider's own word on this one machine (asked by id) that
        # it is gone counts; a machine lost in its first minutes is not left billing until it ends.
        young = instance.launched_at is not None and instance.launched_at > now - grace
        if young and at_provider is not None:
            continue
        status = at_provider or driver.status(instance.provider_instance_id)
        if status.state == ProviderState.TERMINATED:
            _lost(instance, status.ended_at, report)
        elif status.state == ProviderState.EXITED:
            _exited(instance, report)
    for instance_id in Instance.objects.filter(provider=slug, state=InstanceState.TERMINATING).values_list(
        "pk", flat=True
    ):
        if provisioning.instance_terminate(instance_id):
            report.confirmed.append(instance_id)


def _lost(instance: Instance, ended_at: datetime | None, report: ReconcileReport) -> None:
    """Gone at the provider while the database calls it live: a spot machine taken back (preempted),
    or lost. Billing ends when it did; the owner gets a replacement."""
    if instance.spot:
        reason = f"Preempted: {instance.provider} took the spot machine back."
        provisioning.instance_gone(instance.pk, ended_at, reason)
        report.preempted.append(instance.pk)
        workload().instance_preempted(instance, reason)
        return
    provisioning.instance_gone(instance.pk, ended_at, "Lost: the provider no longer has it.")
    report.lost.append(instance.pk)
    workload().instance_lost(instance)


def _exited(instance: Instance, report: ReconcileReport) -> None:
    """Stopped at the provider (an interruptible machine stopped, or the machine's engine exited for
    good): it serves nothing but may still cost, so it is terminated; once the provider confirms, the
    owner gets a replacement (now, or at the reconciler's next round)."""
    reason = (
        f"Preempted: {instance.provider} stopped the spot machine." if instance.spot
        else "The machine stopped on its own; replacing it."
    )  # fmt: skip
    provisioning.instance_stopping(instance.pk, reason)
    if instance.spot:
        report.preempted.append(instance.pk)
        workload().instance_preempted(instance, reason)
    else:
        report.lost.append(instance.pk)
    if provisioning.instance_terminate(instance.pk):
        workload().instance_lost(instance)


def _retry_stuck(now: datetime, report: ReconcileReport) -> None:
    """Steps whose task died: pre-launch rows older than a few seconds, loading rows, unlaunched terminations."""
    settle = now - timedelta(seconds=10)
    for instance_id in Instance.objects.filter(state__in=PRE_LAUNCH_STATES, created_at__lt=settle).values_list(
        "pk", flat=True
    ):
        enqueue("fleet.tasks.instance_provision_task", instance_id)
    waiting = (InstanceState.LOADING, InstanceState.CRASH_LOOPING)
    for instance_id in Instance.objects.filter(state__in=waiting).values_list("pk", flat=True):
        enqueue("fleet.tasks.instance_wait_ready_task", instance_id, 0)
    for instance_id in Instance.objects.filter(state=InstanceState.TERMINATING, provider="").values_list(
        "pk", flat=True
    ):
        if provisioning.instance_terminate(instance_id):
            report.confirmed.append(instance_id)
