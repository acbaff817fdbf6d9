"""Reads for the pages: a deployment's webhooks with their latest delivery, in one query."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from webhooks.models import WebhookDelivery, WebhookSubscription


def webhooks_for_page(deployment_id: str) -> QuerySet[WebhookSubscription]:
    latest = WebhookDelivery.objects.filter(subscription=OuterRef("pk")).order_by("-created_at", "-pk")
    return (
        WebhookSubscription.objects.filter(deployment_id=deployment_id)
        .annotate(
            last_event=Subquery(latest.values("event__type")[:1]),
            last_status=Subquery(latest.values("status")[:1]),
            last_code=Subquery(latest.values("last_response_code")[:1]),
            last_at=Subquery(latest.values("created_at")[:1]),
        )
        .order_by("created_at", "pk")
    )
