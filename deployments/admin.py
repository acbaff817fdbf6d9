from django.contrib import admin

from deployments.models import Deployment, DeploymentEvent
from fleet.models import Instance


class InstanceInline(admin.TabularInline):
    model = Instance
    extra = 0
    fields = ("id", "state", "provider", "provider_instance_id", "launched_at", "ready_at", "terminated_at")
    readonly_fields = fields


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "org", "status", "model", "gpu_type", "region", "desired_replicas", "created_at"]
    list_filter = ["status", "kind"]
    inlines = [InstanceInline]


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    list_display = ["id", "deployment", "state", "provider", "provider_instance_id", "launched_at", "terminated_at"]
    list_filter = ["state", "provider"]
    exclude = ["api_key"]


admin.site.register(DeploymentEvent)
