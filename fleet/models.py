"""The fleet's record of machines: one Instance row per machine asked of a provider, from the
launch request to the provider's confirmed termination. Billing meters it; the reconciler compares
these rows with what each provider lists under our tag.

An instance serves a workload (today a model deployment's replica). The fleet reads the workload
only through fleet.workloads (what to run, whom to bill, whom to tell of a change).
"""

from __future__ import annotations

from typing import Protocol

from django.db import models
from django.utils import timezone

from catalog.models import OfferTier
from gpucloud.core.ids import new_id


class Configured(Protocol):
    """A workload that states the GPU class and preset its replicas are to run."""

    @property
    def config(self) -> tuple[str | None, str | None]: ...


def new_instance_id() -> str:
    return new_id("inst")


class InstanceState(models.TextChoices):
    WAITING_FOR_CAPACITY = "waiting_for_capacity", "Waiting for capacity"
    PROVISIONING = "provisioning"
    LOADING = "loading"
    READY = "ready"
    DRAINING = "draining"  # out of routing, finishing its requests before it is terminated (billed)
    CRASH_LOOPING = "crash_looping", "Crash looping"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"


LIVE_STATES = (InstanceState.LOADING, InstanceState.READY, InstanceState.DRAINING, InstanceState.CRASH_LOOPING)
PRE_LAUNCH_STATES = (InstanceState.WAITING_FOR_CAPACITY, InstanceState.PROVISIONING)
FINAL_STATES = (InstanceState.TERMINATED, InstanceState.FAILED)


class Instance(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_instance_id, editable=False)
    deployment = models.ForeignKey("deployments.Deployment", on_delete=models.PROTECT, related_name="instances")
    state = models.CharField(max_length=22, choices=InstanceState.choices, default=InstanceState.PROVISIONING)
    provider = models.CharField(max_length=40, blank=True)
    provider_instance_id = models.CharField(max_length=200, blank=True)
    tag = models.CharField(max_length=100)
    api_key = models.CharField(max_length=100, help_text="The engine's secret; only the platform calls it")
    endpoint_url = models.CharField(max_length=300, blank=True)
    hourly_price_micros = models.BigIntegerField(default=0)
    hourly_cost_micros = models.BigIntegerField(default=0)
    spot = models.BooleanField(default=False, help_text="Interruptible: the provider may take it back at any time")
    tier = models.CharField(max_length=10, choices=OfferTier.choices, blank=True, help_text="Its offer's tier")
    # What it runs, from its deployment when it was made (null on rows that predate the record:
    # those run their deployment's configuration).
    gpu_type = models.ForeignKey("catalog.GpuType", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    preset = models.ForeignKey("catalog.Preset", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    drain_started_at = models.DateTimeField(null=True, blank=True, help_text="Left routing to be replaced")
    failure_reason = models.CharField(max_length=500, blank=True)
    launch_attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    launched_at = models.DateTimeField(null=True, blank=True, help_text="Provider accepted the launch: billing starts")
    ready_at = models.DateTimeField(null=True, blank=True)
    terminated_at = models.DateTimeField(null=True, blank=True, help_text="Provider confirmed: billing stops")

    class Meta:
        db_table = "deployments_instance"  # created by the deployments app before the fleet app existed
        indexes = [models.Index(fields=["state"]), models.Index(fields=["provider", "provider_instance_id"])]

    def __str__(self) -> str:
        return f"{self.pk} {self.state}"

    def config(self, deployment: Configured) -> tuple[str | None, str | None]:
        """The GPU class and preset it runs (`deployment` is its own, passed to spare a query)."""
        return (self.gpu_type_id, self.preset_id) if self.gpu_type_id else deployment.config

    def runs_config_of(self, deployment: Configured) -> bool:
        return self.config(deployment) == deployment.config
