"""Deployments: what the customer wants (model, GPU, region, replicas). The machines that serve
them are fleet.models.Instance rows (one per replica). Every status change, of the deployment or of
one of its instances, is a DeploymentEvent.
"""

from __future__ import annotations

import secrets

from django.db import models
from django.utils import timezone

from catalog.models import CloudType
from gpucloud.core.ids import new_deployment_id, new_template_id, new_volume_id


def new_proxy_token() -> str:
    return secrets.token_urlsafe(32)


class DeploymentKind(models.TextChoices):
    MODEL = "model", "Model deployment"
    SERVERLESS = "serverless", "Serverless endpoint"
    DEDICATED = "dedicated", "Dedicated deployment"
    POD = "pod", "Pod"
    # A serverless container endpoint (reference/002's inference services, deployments/containers.py):
    # any image serving HTTP on one port, with replicas; its Pod row holds the image, command and port.
    CONTAINER = "container", "Container endpoint"


class DeploymentStatus(models.TextChoices):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SCALING = "scaling"
    DEGRADED = "degraded"
    SCALED_TO_ZERO = "scaled_to_zero", "Scaled to zero"  # no replica, billing nothing; the next request wakes it
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class RolloutState(models.TextChoices):
    """Where the last preset change stands (deployments/preset_rollout.py); blank when there was none."""

    ROLLING = "rolling"  # replicas on the old configuration are being replaced, one at a time
    DONE = "done"
    FAILED = "failed"  # a new replica could not start: the old ones keep serving; apply it again to retry


class ScalingMetric(models.TextChoices):
    CONCURRENCY = "concurrency"  # requests in flight per replica
    QUEUE_DEPTH = "queue_depth"  # requests waiting per replica


class Deployment(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_deployment_id, editable=False)
    org = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="deployments")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=DeploymentKind.choices, default=DeploymentKind.MODEL)
    status = models.CharField(max_length=14, choices=DeploymentStatus.choices, default=DeploymentStatus.PENDING)
    status_reason = models.CharField(max_length=300, blank=True)
    model = models.ForeignKey("catalog.CatalogModel", null=True, on_delete=models.PROTECT, related_name="+")
    gpu_type = models.ForeignKey("catalog.GpuType", null=True, on_delete=models.PROTECT, related_name="+")
    region = models.ForeignKey("catalog.Region", null=True, on_delete=models.PROTECT, related_name="+")
    preset = models.ForeignKey(
        "catalog.Preset", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="GPU class and engine configuration chosen together (reference/000 presets)",
    )  # fmt: skip
    desired_replicas = models.PositiveSmallIntegerField(default=1)
    hourly_price_micros = models.BigIntegerField(default=0, help_text="Per replica, from the chosen offer")
    spot = models.BooleanField(default=False, help_text="Replicas on interruptible offers only (else on-demand only)")
    cloud_type = models.CharField(
        max_length=10, choices=CloudType.choices, default=CloudType.ANY,
        help_text="The tiers its replicas may run on (secure, community, or the cheapest of either)",
    )  # fmt: skip
    provider = models.CharField(
        max_length=40, blank=True,
        help_text="Launch on this provider's offers only (rented from the marketplace: POST /offers/{id}/rent); "
        "blank: any provider's, cheapest first",
    )  # fmt: skip
    concurrency_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests in flight at once through the gateway; more get 429"
    )
    # Autoscaling (deployments/scaling/): replicas between min and max, following `target`
    # requests per replica (in flight, or queued); to zero after `idle_timeout_seconds` without
    # traffic when `scale_to_zero` and min is 0.
    min_replicas = models.PositiveSmallIntegerField(default=1)
    max_replicas = models.PositiveSmallIntegerField(default=1)
    scale_to_zero = models.BooleanField(default=False)
    idle_timeout_seconds = models.PositiveIntegerField(default=900)
    # A request to a cold deployment is held (the gateway wakes it) when the wake is expected to take
    # at most this long, so a client that does not handle 202 (the OpenAI SDK) gets its answer.
    cold_start_wait_seconds = models.PositiveSmallIntegerField(default=60)
    scaling_metric = models.CharField(max_length=12, choices=ScalingMetric.choices, default=ScalingMetric.CONCURRENCY)
    scaling_target = models.FloatField(default=4.0, help_text="Requests per replica the autoscaler aims for")
    # SLA targets (deployments/sla.py): checked every minute against the measured window.
    ttft_target_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token, p95")
    throughput_target_tps = models.FloatField(null=True, blank=True, help_text="Tokens/s per request, at least")
    # A preset change (deployments/preset_rollout.py) sets the preset, its GPU class and price above at
    # once; replicas still on the previous ones are then replaced one at a time.
    rollout_state = models.CharField(max_length=8, choices=RolloutState.choices, blank=True)
    rollout_message = models.CharField(max_length=500, blank=True, help_text="The last step, or why it stopped")
    rollout_from_preset = models.ForeignKey(
        "catalog.Preset", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The preset before the last change (null: none)",
    )  # fmt: skip
    rollout_total = models.PositiveSmallIntegerField(default=0, help_text="Replicas the last rollout replaces")
    rollout_started_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey("accounts.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True, help_text="First time a replica was ready")
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name

    @property
    def wants_replicas(self) -> bool:
        return self.status not in (
            DeploymentStatus.STOPPING,
            DeploymentStatus.STOPPED,
            DeploymentStatus.FAILED,
            DeploymentStatus.SCALED_TO_ZERO,
        )

    @property
    def is_cold(self) -> bool:
        """Nothing runs, and a request may wake it: scaled to zero (idle, or created cold). A stopped
        deployment was deleted or stopped for nonpayment: it stays stopped."""
        return self.status == DeploymentStatus.SCALED_TO_ZERO

    @property
    def is_rolling(self) -> bool:
        return self.rollout_state == RolloutState.ROLLING

    @property
    def config(self) -> tuple[str | None, str | None]:
        """The GPU class and preset its replicas are to run."""
        return (self.gpu_type_id, self.preset_id)


class DeploymentEvent(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    instance = models.ForeignKey(
        "fleet.Instance", null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    at = models.DateTimeField(default=timezone.now)
    from_status = models.CharField(max_length=22, blank=True)
    to_status = models.CharField(max_length=22)
    reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.deployment_id} {self.from_status}->{self.to_status}"


class RequestMinute(models.Model):
    """What the gateway served for one deployment in one minute (UTC), summed over every gateway
    process: the source of metrics, SLA checks, the autoscaler and cost per million tokens.

    Written by the rollup task from the gateway's counters with absolute totals, so running the
    rollup again for a minute rewrites the same row. `latency_hist` and `ttft_hist` map a
    log-spaced bucket index (see deployments.traffic) to a count.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="request_minutes")
    minute = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0, help_text="Failed by the engine or the gateway (5xx)")
    rejected = models.PositiveIntegerField(default=0, help_text="Refused before the engine (4xx, 429, 202)")
    cut = models.PositiveIntegerField(default=0, help_text="Streams the client closed before the end")
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0)
    ttft_ms_sum = models.FloatField(default=0)
    ttft_count = models.PositiveIntegerField(default=0)
    generation_ms_sum = models.FloatField(default=0, help_text="Time spent generating after the first token")
    latency_hist = models.JSONField(default=dict)
    ttft_hist = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["deployment", "minute"], name="request_minute_unique")]
        indexes = [models.Index(fields=["deployment", "minute"])]

    def __str__(self) -> str:
        return f"{self.deployment_id} {self.minute:%Y-%m-%d %H:%M} {self.requests} requests"


class SlaMetric(models.TextChoices):
    TTFT = "ttft_ms"
    THROUGHPUT = "throughput_tps"


class SlaBreach(models.Model):
    """A target missed by a deployment's measured window: open until a check meets it again."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="sla_breaches")
    metric = models.CharField(max_length=16, choices=SlaMetric.choices)
    target = models.FloatField()
    measured = models.FloatField()
    at = models.DateTimeField(default=timezone.now)
    recovered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["deployment", "-at"])]

    def __str__(self) -> str:
        return f"{self.deployment_id} {self.metric} {self.measured} vs {self.target}"


class VolumeStatus(models.TextChoices):
    CREATING = "creating"  # accepted; the provider is making it (billing starts once it exists)
    AVAILABLE = "available"
    RESIZING = "resizing"  # growing at the provider (billed at the new size from when it was asked)
    DELETING = "deleting"
    DELETED = "deleted"  # the provider confirmed it gone: billing stopped
    FAILED = "failed"  # the provider could not make it; never billed


class Volume(models.Model):
    """Storage that outlives the machines using it: kept by one provider in one region (a pod that
    mounts it launches there), billed per GB-hour for as long as it exists (deployments/volumes.py)."""

    id = models.CharField(primary_key=True, max_length=40, default=new_volume_id, editable=False)
    org = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="volumes")
    name = models.CharField(max_length=100)
    size_gb = models.PositiveIntegerField()
    target_size_gb = models.PositiveIntegerField(null=True, blank=True, help_text="Asked for; growing to it")
    region = models.ForeignKey("catalog.Region", on_delete=models.PROTECT, related_name="+")
    provider = models.CharField(max_length=40, help_text="The provider that keeps it (its slug)")
    provider_volume_id = models.CharField(max_length=200, blank=True)
    tag = models.CharField(max_length=100, help_text="The fleet tag it carries at the provider")
    status = models.CharField(max_length=10, choices=VolumeStatus.choices, default=VolumeStatus.CREATING)
    status_reason = models.CharField(max_length=500, blank=True)
    hourly_price_micros = models.BigIntegerField(default=0, help_text="What it bills per hour at its size")
    # Each size is its own metered session (`<id>:<n>`): a grow ends one and starts the next.
    meter_sessions = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey("accounts.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    ready_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True, help_text="The provider confirmed: billing stops")

    class Meta:
        indexes = [models.Index(fields=["org", "-created_at"], name="volume_org_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.size_gb} GB)"

    @property
    def meter_key(self) -> str:
        return f"{self.pk}:{self.meter_sessions}"


class Pod(models.Model):
    """A pod: one machine running the owner's image (reference/003's custom pods). Its lifecycle,
    machine, billing and events are its Deployment's (kind `pod`, one replica); this row holds what
    the machine runs. Stop releases the machine and keeps the volume; start launches the same again
    where the volume lives; terminate ends it for good (the volume survives unless asked)."""

    deployment = models.OneToOneField(Deployment, primary_key=True, on_delete=models.CASCADE, related_name="pod")
    image = models.CharField(max_length=300)
    gpu_count = models.PositiveSmallIntegerField(default=1)
    container_disk_gb = models.PositiveIntegerField(default=20)
    ports = models.JSONField(default=list, help_text='Exposed ports: ["8888/http", "22/tcp"]')
    env = models.JSONField(default=dict)
    command = models.JSONField(default=list, help_text="Entry point; empty: the image's own")
    args = models.JSONField(default=list)
    ssh_public_keys = models.JSONField(default=list, help_text="Its own keys (the org's saved keys join them)")
    volume = models.ForeignKey(Volume, null=True, blank=True, on_delete=models.PROTECT, related_name="pods")
    volume_mount_path = models.CharField(max_length=200, default="/workspace")
    max_price_micros = models.BigIntegerField(null=True, blank=True, help_text="Spot: the most it may cost per hour")
    template = models.CharField(max_length=60, blank=True, help_text="The template it started from (its id)")
    proxy_token = models.CharField(
        max_length=64, default=new_proxy_token, help_text="Opens its ports through the platform's proxy"
    )
    terminated = models.BooleanField(default=False, help_text="Asked to end for good (else a stop keeps it)")
    idle_timeout_minutes = models.PositiveIntegerField(
        null=True, blank=True, help_text="Terminated after this long without activity (null: never)"
    )
    starts = models.PositiveIntegerField(default=1, help_text="Launches asked for: 1 at create, +1 per start")
    description = models.CharField(max_length=1000, blank=True, help_text="A container endpoint's, as given")

    def __str__(self) -> str:
        return f"{self.deployment_id} ({self.image})"

    def port_numbers(self, protocol: str | None = None) -> list[int]:
        """Its ports' numbers ("8888/http" -> 8888), of one protocol (http, tcp) when given."""
        return [int(port.split("/")[0]) for port in self.ports if protocol is None or port.endswith(f"/{protocol}")]

    @property
    def status(self) -> str:
        """The pod's own vocabulary for its deployment's status: provisioning, running, stopping,
        stopped, starting, terminating, terminated, failed."""
        status = self.deployment.status
        if status in (DeploymentStatus.STOPPING, DeploymentStatus.STOPPED):
            ending = "terminat" if self.terminated else "stopp"
            return f"{ending}ing" if status == DeploymentStatus.STOPPING else f"{ending}ed"
        if status == DeploymentStatus.FAILED:
            return "failed"
        if status in (DeploymentStatus.ACTIVE, DeploymentStatus.SCALING):
            return "running"
        return "starting" if self.starts > 1 else "provisioning"


class Template(models.Model):
    """An organization's saved pod settings (reference/003's templates): a pod created from it takes
    these as defaults. The built-ins everyone sees are code, not rows (deployments/pod_templates.py)."""

    id = models.CharField(primary_key=True, max_length=40, default=new_template_id, editable=False)
    org = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="pod_templates")
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=1000, blank=True)
    image = models.CharField(max_length=300)
    command = models.JSONField(default=list, help_text="Entry point; empty: the image's own")
    args = models.JSONField(default=list)
    ports = models.JSONField(default=list, help_text='Exposed ports: ["8888/http", "22/tcp"]')
    env = models.JSONField(default=dict)
    container_disk_gb = models.PositiveIntegerField(default=20)
    volume_mount_path = models.CharField(max_length=200, default="/workspace")
    volume_size_gb = models.PositiveIntegerField(
        null=True, blank=True, help_text="Suggested: a pod from it gets a new volume this size unless it says otherwise"
    )
    created_by = models.ForeignKey("accounts.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["org", "-created_at"], name="template_org_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.image})"
