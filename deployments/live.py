"""Live updates of deployments to the browser: after a status change commits, the new status badge
(rendered by the same template partial the pages use), the deployment's running cost and the org's
balance (whose rate just changed) go to the org's open pages."""

from __future__ import annotations

from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from gpucloud.live import balance_snapshot, org_push


def deployment_changed_on_commit(deployment_id: str) -> None:
    transaction.on_commit(lambda: deployment_push(deployment_id))


def deployment_push(deployment_id: str) -> None:
    from deployments.models import Deployment
    from deployments.selectors import deployment_row

    deployment = Deployment.objects.filter(pk=deployment_id).select_related("org").first()
    if deployment is None:
        return
    org_push(deployment.org_id, {
        "type": "deployment.changed",
        "deployment_id": deployment.pk,
        "status": deployment.status,
        "html": render_to_string("deployments/detail.html#status", {"deployment": deployment}),
        **deployment_row(deployment, now=timezone.now()).ticker,  # corrects the page's running cost (the rate changed)
        "balance": balance_snapshot(deployment.org),
    })  # fmt: skip
