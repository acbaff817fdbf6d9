"""The dashboard's reads beyond money and deployments: what happened lately. A fixed number of
queries whatever the org holds (the page-speed bench seeds 200 deployments and 100,000 ledger
entries)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from accounts.models import Organization
from billing.models import LedgerTransaction, TransactionKind
from catalog.models import CatalogModel
from deployments.models import DeploymentEvent, DeploymentKind, DeploymentStatus
from pages.catalog import ModelCard, model_cards

ACTIVITY_SHOWN = 10
QUICK_DEPLOY_SHOWN = 4
# Transitions worth a line in the activity feed (replica churn in between is on the deployment page).
NOTABLE_STATUSES = (DeploymentStatus.PROVISIONING, DeploymentStatus.ACTIVE, DeploymentStatus.DEGRADED,
                    DeploymentStatus.STOPPED, DeploymentStatus.FAILED, DeploymentStatus.SCALED_TO_ZERO)  # fmt: skip
MONEY_IN = (TransactionKind.TOPUP, TransactionKind.AUTO_REFILL, TransactionKind.REFUND, TransactionKind.ADJUSTMENT)


@dataclass(frozen=True)
class Activity:
    at: datetime
    text: str
    url: str | None = None
    failure: bool = False


def recent_activity(org: Organization) -> list[Activity]:
    """Deployments starting, becoming active, stopping and failing, and money coming in, newest first."""
    events = (
        DeploymentEvent.objects.filter(deployment__org=org, instance__isnull=True, to_status__in=NOTABLE_STATUSES)
        .select_related("deployment")
        .order_by("-at", "-pk")[:ACTIVITY_SHOWN]
    )
    items = [_event_activity(e) for e in events]
    credits = LedgerTransaction.objects.filter(org=org, kind__in=MONEY_IN).order_by("-created_at")[:ACTIVITY_SHOWN]
    items += [Activity(at=t.created_at, text=t.description or t.get_kind_display()) for t in credits]
    return sorted(items, key=lambda a: a.at, reverse=True)[:ACTIVITY_SHOWN]


def _event_activity(event: DeploymentEvent) -> Activity:
    name = event.deployment.name
    pod = event.deployment.kind == DeploymentKind.POD  # a pod has its own page (the deployment page 404s)
    text = {
        DeploymentStatus.PROVISIONING: f"{name} {'pod' if pod else 'deployment'} started",
        DeploymentStatus.ACTIVE: f"{name} is {'running' if pod else 'active'}",
        DeploymentStatus.DEGRADED: f"{name} is degraded",
        DeploymentStatus.STOPPED: f"{name} stopped",
        DeploymentStatus.FAILED: f"{name} failed",
        DeploymentStatus.SCALED_TO_ZERO: f"{name} scaled to zero",
    }.get(event.to_status, f"{name}: {event.to_status}")  # type: ignore[call-overload]
    if event.reason and event.to_status in (DeploymentStatus.FAILED, DeploymentStatus.DEGRADED):
        text = f"{text}: {event.reason}"
    failure = event.to_status in (DeploymentStatus.FAILED, DeploymentStatus.DEGRADED)
    url = f"/{'pods' if pod else 'deployments'}/{event.deployment_id}/"
    return Activity(at=event.at, text=text, url=url, failure=failure)


def quick_deploy_models() -> list[ModelCard]:
    """The catalog's first models by its own order, those that can run now before those that
    cannot (a new operator's only runnable model comes first, not a GPU model nothing can host)."""
    models = list(CatalogModel.objects.curated().select_related("default_gpu_type").order_by("sort_order", "slug"))
    cards = sorted(model_cards(models), key=lambda c: not c.availability.can_deploy)  # stable: keeps the order
    return cards[:QUICK_DEPLOY_SHOWN]
