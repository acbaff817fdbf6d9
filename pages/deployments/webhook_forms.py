"""The deployment page's webhook forms (add, test, delete): each answers with the deployment page,
the secret of a new webhook shown once, a refusal inline with what was typed."""

from __future__ import annotations

from django.http import HttpResponse

from pages.deployments.section_forms import SectionPost, section_form
from webhooks import services

SECTION = "#webhooks-h"


@section_form("webhook", anchor=SECTION)
def webhook_add(post: SectionPost) -> HttpResponse:
    url, events, schedule = post.form.get("url", ""), post.form.getlist("events"), post.form.get("retry_schedule")
    post.posted = {"url": url, "events": events, "retry_schedule": schedule or ""}
    subscription = services.subscription_create(
        principal=post.principal, deployment=post.deployment, url=url, events=events, retry_schedule=schedule or None
    )
    return post.page(new_webhook=subscription)


@section_form("webhook", anchor=SECTION)
def webhook_test(post: SectionPost, webhook_id: str) -> HttpResponse:
    subscription = services.subscription_get(post.deployment, webhook_id)
    delivery = services.subscription_test(principal=post.principal, subscription=subscription)
    if delivery.status == "succeeded":
        notice = f"Test event delivered to {subscription.url}: {delivery.last_response_code}."
    else:
        notice = f"Test event not delivered: {delivery.last_error or 'no answer'}. It will be retried on the schedule."
    return post.page(webhook_notice=notice, webhook_notice_ok=delivery.status == "succeeded")


@section_form("webhook", anchor=SECTION)
def webhook_delete(post: SectionPost, webhook_id: str) -> None:
    subscription = services.subscription_get(post.deployment, webhook_id)
    services.subscription_delete(principal=post.principal, subscription=subscription)
