"""Stripe's webhook endpoint: verify, store, answer 200, process in a task (STYLE.md 8)."""

from __future__ import annotations

from typing import Any

import stripe
from django.db import IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing import stripe_gateway
from billing.models import StripeEvent, StripeEventStatus
from gpucloud.core.errors import error_response
from gpucloud.core.jobs import enqueue


def stripe_event_store(event: dict[str, Any]) -> tuple[StripeEvent, bool]:
    """Store a verified event once; True when it needs processing (new, or failed before)."""
    try:
        with transaction.atomic():
            stored = StripeEvent.objects.create(event_id=event["id"], type=event["type"], payload=event)
            return stored, True
    except IntegrityError:
        stored = StripeEvent.objects.get(event_id=event["id"])
        return stored, stored.status == StripeEventStatus.FAILED


@csrf_exempt  # Stripe signs the payload instead
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event = stripe_gateway.webhook_event(request.body, request.headers.get("Stripe-Signature"))
    except stripe_gateway.PaymentsNotConfigured as exc:
        return error_response(exc.status, exc.type, exc.message)
    except stripe.SignatureVerificationError:
        return error_response(400, "invalid_signature", "The Stripe-Signature header does not match this payload.")
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deep for the parser
        return error_response(400, "invalid_request_error", "The payload is not valid JSON.")
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        return error_response(400, "invalid_request_error", "The payload is not a Stripe event.")
    stored, needs_processing = stripe_event_store(event)
    if needs_processing:
        enqueue("billing.tasks.stripe_event_process_task", stored.pk)
    return JsonResponse({"received": True})
