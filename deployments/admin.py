from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone

from deployments.models import Deployment, DeploymentEvent
from fleet.models import Instance
from gpucloud.core.durations import duration_text
from gpucloud.core.money import usd_display


class ReadOnlyRows:
    """Instance rows are the fleet's record of machines it launched: the provisioning tasks and the
    reconciler write them; a hand-added, hand-edited or deleted row would disagree with the cloud
    and with billing (a deleted one leaves its machine running, unbilled). The admin only shows them."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class InstanceInline(ReadOnlyRows, admin.TabularInline):
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
class InstanceAdmin(ReadOnlyRows, admin.ModelAdmin):
    """The fleet view: every machine by provider and state, how old, what it costs us, whose it is and
    what last went wrong."""

    list_display = ["id", "provider", "state", "tier", "spot", "age", "cost_per_hour", "owner",
                    "provider_instance_id", "failure_reason"]  # fmt: skip
    list_filter = ["provider", "state", "tier", "spot"]
    list_select_related = ["deployment__org"]
    search_fields = ["id", "provider_instance_id", "deployment__id", "deployment__org__name"]
    exclude = ["api_key"]

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj: Instance) -> str:
        end = obj.terminated_at or timezone.now()
        return duration_text(int((end - (obj.launched_at or obj.created_at)).total_seconds()))

    @admin.display(description="Cost/h", ordering="hourly_cost_micros")
    def cost_per_hour(self, obj: Instance) -> str:
        return usd_display(obj.hourly_cost_micros)  # exact, as every page shows money

    @admin.display(description="Owner", ordering="deployment__org__name")
    def owner(self, obj: Instance) -> str:
        return str(obj.deployment.org)


admin.site.register(DeploymentEvent)
