"""Live updates of deployments to the browser: after a status change commits, the new status badge
(rendered by the same template partial the pages use), the deployment's running cost and the org's
balance (whose rate just changed) go to the org's open pages. A message marked `with_activity` gets
the dashboard's activity feed added by the pages' consumer (pages.consumers), which owns that view."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Organization
from billing.live import balance_snapshot
from deployments.models import Deployment
from deployments.selectors import DeploymentRow, deployment_row, deployment_rows, deployment_timeline
from gpucloud.core.live import org_push

SNAPSHOT_ROWS = 50  # the newest deployments not ended: as many as a page lists
# A page rendered a deployment as stopping; it stopped before the page's socket joined (so the push
# went to nobody): the snapshot still carries deployments that ended this recently.
SNAPSHOT_ENDED_WITHIN = timedelta(minutes=15)


def deployment_changed_on_commit(deployment_id: str) -> None:
    transaction.on_commit(lambda: deployment_push(deployment_id))


def deployment_push(deployment_id: str) -> None:
    deployment = Deployment.objects.filter(pk=deployment_id).select_related("org", "pod").first()
    if deployment is None:
        return
    org_push(deployment.org_id, lambda: _pushed(deployment))


def _pushed(deployment: Deployment) -> dict[str, Any]:
    row = deployment_row(deployment, now=timezone.now())
    message = _changed(row, balance_snapshot(deployment.org), timeline=True)
    message["with_activity"] = True  # a new line on the dashboard's feed (the pages' consumer renders it)
    return message


def org_snapshot(org: Organization, *, focus: str | None = None) -> list[dict[str, Any]]:
    """What a page that just connected may have missed since it was rendered: the current state of
    every deployment not ended or ended within SNAPSHOT_ENDED_WITHIN (with its replicas and events
    for the one the page shows, `focus`), and the balance."""
    balance = balance_snapshot(org)
    ended_since = timezone.now() - SNAPSHOT_ENDED_WITHIN
    rows = deployment_rows(org, active_only=True, ended_since=ended_since, limit=SNAPSHOT_ROWS)
    return [_changed(row, balance, timeline=row.deployment.pk == focus) for row in rows] + [
        {"type": "balance.changed", "balance": balance, "with_activity": True}
    ]


def _changed(row: DeploymentRow, balance: dict[str, int], *, timeline: bool) -> dict[str, Any]:
    deployment = row.deployment
    message = {
        "type": "deployment.changed",
        "deployment_id": deployment.pk,
        "status": deployment.status,
        "html": render_to_string("deployments/detail.html#status", {"deployment": deployment}),
        **row.ticker,  # corrects the page's running cost (the rate changed)
        "balance": balance,
    }
    if timeline:  # the deployment page's replicas and events, rendered by its own partial
        message["timeline_html"] = render_to_string("deployments/detail.html#timeline", deployment_timeline(deployment))
    return message
