"""REST endpoints of webhooks: /api/v1/deployments/{id}/webhooks (reference/000 shapes) and
/api/v1/pods/{id}/webhooks (the same subscriptions, to a pod's pod.* events)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from accounts.auth import api_principal
from deployments.selectors import deployment_get_for_org, pod_get_for_org
from gpucloud.core.errors import answers
from webhooks import schemas, services
from webhooks.events import EVENT_TYPES
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookSubscription

router = Router(tags=["webhooks"])
DELIVERIES_SHOWN = 100


def _webhook_out(subscription: WebhookSubscription) -> dict[str, object]:
    return {
        "id": subscription.pk,
        "deployment_id": subscription.deployment_id,
        "url": subscription.url,
        "events": subscription.events,
        "retry_schedule": subscription.retry_schedule,
        "enabled": subscription.enabled,
        "disabled_reason": subscription.disabled_reason or None,
        "created_at": subscription.created_at,
    }


def _delivery_out(delivery: WebhookDelivery) -> dict[str, object]:
    return {
        "id": delivery.pk,
        "event_id": delivery.event_id,
        "event_type": delivery.event.type,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "last_response_code": delivery.last_response_code,
        "last_error": delivery.last_error or None,
        "created_at": delivery.created_at,
        "finished_at": delivery.finished_at,
        "attempt_log": [_attempt_out(a) for a in delivery.attempt_log.all()],
    }


def _attempt_out(attempt: WebhookAttempt) -> dict[str, object]:
    return {
        "number": attempt.number,
        "at": attempt.at,
        "response_code": attempt.response_code,
        "latency_ms": attempt.latency_ms,
        "error": attempt.error or None,
        "succeeded": attempt.succeeded,
    }


def _subscription(request: HttpRequest, deployment_id: str, webhook_id: str) -> WebhookSubscription:
    deployment = deployment_get_for_org(api_principal(request).org, deployment_id)
    return services.subscription_get(deployment, webhook_id)


@router.get("/webhook-event-types", response=list[schemas.EventTypeOut], summary="Events a webhook can receive")
def webhook_event_types(request: HttpRequest) -> list[dict[str, str]]:
    return [{"type": name, "description": text} for name, text in EVENT_TYPES.items()]


@router.post(
    "/deployments/{deployment_id}/webhooks", response={201: schemas.WebhookCreatedOut}, summary="Subscribe to events"
)
@answers(400, 409)
def webhooks_create(request: HttpRequest, deployment_id: str, payload: schemas.WebhookIn) -> Status:
    principal = api_principal(request)
    deployment = deployment_get_for_org(principal.org, deployment_id)
    subscription = services.subscription_create(
        principal=principal, deployment=deployment, url=payload.url, events=payload.events,
        retry_schedule=payload.retry_schedule,
    )  # fmt: skip
    return Status(201, {**_webhook_out(subscription), "secret": subscription.secret})


@router.get("/deployments/{deployment_id}/webhooks", response=list[schemas.WebhookOut], summary="List subscriptions")
def webhooks_list(request: HttpRequest, deployment_id: str) -> list[dict[str, object]]:
    deployment = deployment_get_for_org(api_principal(request).org, deployment_id)
    return [_webhook_out(s) for s in deployment.webhooks.order_by("created_at", "pk")]


@router.get("/deployments/{deployment_id}/webhooks/{webhook_id}", response=schemas.WebhookOut, summary="One webhook")
def webhooks_get(request: HttpRequest, deployment_id: str, webhook_id: str) -> dict[str, object]:
    return _webhook_out(_subscription(request, deployment_id, webhook_id))


@router.patch(
    "/deployments/{deployment_id}/webhooks/{webhook_id}", response=schemas.WebhookOut, summary="Change a webhook"
)
@answers(400, 409)
def webhooks_update(
    request: HttpRequest, deployment_id: str, webhook_id: str, payload: schemas.WebhookPatchIn
) -> dict[str, object]:
    subscription = _subscription(request, deployment_id, webhook_id)
    change = services.SubscriptionChange(**payload.dict(exclude_unset=True))
    return _webhook_out(
        services.subscription_update(principal=api_principal(request), subscription=subscription, change=change)
    )


@router.delete("/deployments/{deployment_id}/webhooks/{webhook_id}", response={204: None}, summary="Unsubscribe")
def webhooks_delete(request: HttpRequest, deployment_id: str, webhook_id: str) -> Status:
    subscription = _subscription(request, deployment_id, webhook_id)
    services.subscription_delete(principal=api_principal(request), subscription=subscription)
    return Status(204, None)


@router.post(
    "/deployments/{deployment_id}/webhooks/{webhook_id}/test",
    response=schemas.DeliveryOut,
    summary="Send a webhook.test event now",
)
@answers(409)
def webhooks_test(request: HttpRequest, deployment_id: str, webhook_id: str) -> dict[str, object]:
    subscription = _subscription(request, deployment_id, webhook_id)
    return _delivery_out(services.subscription_test(principal=api_principal(request), subscription=subscription))


@router.get(
    "/deployments/{deployment_id}/webhooks/{webhook_id}/deliveries",
    response=list[schemas.DeliveryOut],
    summary="Delivery log, newest first",
)
def webhooks_deliveries(
    request: HttpRequest, deployment_id: str, webhook_id: str, status: str | None = None
) -> list[dict[str, object]]:
    subscription = _subscription(request, deployment_id, webhook_id)
    deliveries = subscription.deliveries.select_related("event").prefetch_related("attempt_log")
    if status is not None:
        deliveries = deliveries.filter(status=status)
    return [_delivery_out(d) for d in deliveries.order_by("-created_at", "-pk")[:DELIVERIES_SHOWN]]


@router.post(
    "/deployments/{deployment_id}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    response=schemas.DeliveryOut,
    summary="Attempt a delivery again",
)
@answers(409)
def webhooks_redeliver(
    request: HttpRequest, deployment_id: str, webhook_id: str, delivery_id: str
) -> dict[str, object]:
    subscription = _subscription(request, deployment_id, webhook_id)
    delivery = services.delivery_redeliver(
        principal=api_principal(request), subscription=subscription, delivery_id=delivery_id
    )
    return _delivery_out(delivery)


# --- a pod's webhooks: the same subscriptions, taking pod.* events ------------------------------


def _pod_webhook_out(subscription: WebhookSubscription) -> dict[str, object]:
    shown = _webhook_out(subscription)
    shown["pod_id"] = shown.pop("deployment_id")
    return shown


def _pod_subscription(request: HttpRequest, pod_id: str, webhook_id: str) -> WebhookSubscription:
    return services.subscription_get(pod_get_for_org(api_principal(request).org, pod_id), webhook_id)


@router.post(
    "/pods/{pod_id}/webhooks",
    response={201: schemas.PodWebhookCreatedOut},
    summary="Subscribe to a pod's events",
    description="pod.running, pod.stopped, pod.preempted, pod.failed and the account's events (400 for a "
    "deployment's); 409 past 10 webhooks on the pod.",
)
@answers(400, 409)
def pod_webhooks_create(request: HttpRequest, pod_id: str, payload: schemas.PodWebhookIn) -> Status:
    principal = api_principal(request)
    pod = pod_get_for_org(principal.org, pod_id)
    subscription = services.subscription_create(
        principal=principal, deployment=pod, url=payload.url, events=payload.events,
        retry_schedule=payload.retry_schedule, subject="pod",
    )  # fmt: skip
    return Status(201, {**_pod_webhook_out(subscription), "secret": subscription.secret})


@router.get("/pods/{pod_id}/webhooks", response=list[schemas.PodWebhookOut], summary="A pod's subscriptions")
def pod_webhooks_list(request: HttpRequest, pod_id: str) -> list[dict[str, object]]:
    pod = pod_get_for_org(api_principal(request).org, pod_id)
    return [_pod_webhook_out(s) for s in pod.webhooks.order_by("created_at", "pk")]


@router.get("/pods/{pod_id}/webhooks/{webhook_id}", response=schemas.PodWebhookOut, summary="One webhook of a pod")
def pod_webhooks_get(request: HttpRequest, pod_id: str, webhook_id: str) -> dict[str, object]:
    return _pod_webhook_out(_pod_subscription(request, pod_id, webhook_id))


@router.patch(
    "/pods/{pod_id}/webhooks/{webhook_id}", response=schemas.PodWebhookOut, summary="Change a webhook of a pod"
)
@answers(400, 409)
def pod_webhooks_update(
    request: HttpRequest, pod_id: str, webhook_id: str, payload: schemas.PodWebhookPatchIn
) -> dict[str, object]:
    subscription = _pod_subscription(request, pod_id, webhook_id)
    change = services.SubscriptionChange(**payload.dict(exclude_unset=True))
    return _pod_webhook_out(
        services.subscription_update(
            principal=api_principal(request), subscription=subscription, change=change, subject="pod"
        )
    )


@router.delete("/pods/{pod_id}/webhooks/{webhook_id}", response={204: None}, summary="Unsubscribe from a pod")
def pod_webhooks_delete(request: HttpRequest, pod_id: str, webhook_id: str) -> Status:
    subscription = _pod_subscription(request, pod_id, webhook_id)
    services.subscription_delete(principal=api_principal(request), subscription=subscription)
    return Status(204, None)
