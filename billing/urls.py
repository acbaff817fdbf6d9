from __future__ import annotations

from django.urls import path

from billing import views, webhooks

urlpatterns = [
    path("billing/", views.billing, name="billing"),
    path("billing/transactions", views.billing_transactions, name="billing_transactions"),
    path("billing/add-funds", views.billing_add_funds, name="billing_add_funds"),
    path("billing/save-card", views.billing_save_card, name="billing_save_card"),
    path("billing/auto-refill", views.billing_auto_refill, name="billing_auto_refill"),
    path("billing/spend-limit", views.billing_spend_limit, name="billing_spend_limit"),
    path("billing/stripe/webhook/", webhooks.stripe_webhook, name="stripe_webhook"),
]
