"""Live updates of deployments to the browser: after a status change commits, the new status
badge (rendered by the same template partial the pages use) is pushed to the org's websocket
group. In the distributed topology the Redis channel layer carries it from whichever process
made the change (a Celery worker, usually) to the web process holding the socket."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

logger = logging.getLogger(__name__)


def org_group(org_id: str) -> str:
    return f"org.{org_id}"


def deployment_changed_on_commit(deployment_id: str) -> None:
    transaction.on_commit(lambda: deployment_push(deployment_id))


def deployment_push(deployment_id: str) -> None:
    """Send the deployment's current status to its org's open pages; a push that cannot be sent
    is logged and dropped (the page still shows the truth on its next load)."""
    from deployments.models import Deployment

    deployment = Deployment.objects.filter(pk=deployment_id).first()
    layer = get_channel_layer()
    if deployment is None or layer is None:
        return
    from deployments.selectors import deployment_row

    message = {
        "type": "deployment.changed",
        "deployment_id": deployment.pk,
        "status": deployment.status,
        "html": render_to_string("deployments/detail.html#status", {"deployment": deployment}),
        **deployment_row(deployment, now=timezone.now()).ticker,  # corrects the page's running cost (the rate changed)
    }
    try:
        async_to_sync(layer.group_send)(org_group(deployment.org_id), message)
    except Exception:
        logger.warning("live update for %s not sent", deployment_id, exc_info=True)
