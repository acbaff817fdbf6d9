"""Webhook background work: attempt one delivery; every few seconds, start the attempts that are due."""

from __future__ import annotations

from celery import shared_task

from webhooks import delivery


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def webhook_deliver_task(delivery_id: str) -> None:
    delivery.delivery_attempt(delivery_id)


@shared_task(ignore_result=True, soft_time_limit=30, time_limit=60)
def webhook_dispatch_task() -> None:
    for delivery_id in delivery.deliveries_due():
        webhook_deliver_task.delay(delivery_id)
