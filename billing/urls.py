from __future__ import annotations

from django.urls import path

from billing import webhooks

# Stripe's webhook (the billing pages are in pages/urls.py).
urlpatterns = [
    path("billing/stripe/webhook/", webhooks.stripe_webhook, name="stripe_webhook"),
]
