from django.contrib import admin

from catalog.models import CatalogModel, GpuType, Offer, Preset, Region

# Providers are administered with the fleet (fleet/admin.py): their page tests the connection.
admin.site.register([GpuType, Region, CatalogModel, Preset])


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    """Read-only: the rows are what the providers' drivers listed at the last refresh."""

    list_display = ("provider", "gpu_type", "gpu_count", "region", "tier", "spot", "price_per_hour_micros",
                    "cost_per_hour_micros", "available", "seen_at")  # fmt: skip
    list_filter = ("provider", "region", "tier", "spot")

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False
