from django.contrib import admin

from webhooks.models import WebhookDelivery, WebhookSubscription


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    list_display = ("id", "org", "deployment", "url", "enabled", "disabled_reason", "created_at")
    list_filter = ("enabled",)
    search_fields = ("id", "url", "org__name", "deployment__id")
    exclude = ("secret",)  # signing keys stay out of the admin's pages


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "subscription", "event", "status", "attempts", "next_attempt_at", "last_response_code")
    list_filter = ("status",)
    search_fields = ("id", "event__id", "subscription__id")
