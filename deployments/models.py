from __future__ import annotations

from django.db import models
from django.utils import timezone

from gpucloud.ids import new_deployment_id


class DeploymentKind(models.TextChoices):
    MODEL = "model", "Model deployment"
    SERVERLESS = "serverless", "Serverless endpoint"
    DEDICATED = "dedicated", "Dedicated deployment"
    POD = "pod", "Pod"


class DeploymentStatus(models.TextChoices):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SCALING = "scaling"
    DEGRADED = "degraded"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class Deployment(models.Model):
    id = models.CharField(primary_key=True, max_length=40, default=new_deployment_id, editable=False)
    org = models.ForeignKey("accounts.Organization", on_delete=models.PROTECT, related_name="deployments")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=DeploymentKind.choices, default=DeploymentKind.MODEL)
    status = models.CharField(max_length=14, choices=DeploymentStatus.choices, default=DeploymentStatus.PENDING)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.name
