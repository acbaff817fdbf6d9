"""Creates at once on a provider with few slots (issue 15 §9): two creates 0.1 s apart put three
engines on a two-slot local provider, as each launch counted the engines running and then started
its own. Ten creates through the API at once, in threads of their own against PostgreSQL, with the
provisioning each runs after its commit (tasks run eagerly in the creating thread, as the worker
would): never more than two engines run, the rest wait for capacity or get the documented 409, and
a freed slot goes to one that waited."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from catalog.models import Provider
from deployments.models import Deployment
from fleet.models import LIVE_STATES, Instance, InstanceState
from fleet.providers.local.driver import LocalDriver
from fleet.reconciler import fleet_reconcile
from tests.support.billing import fund
from tests.support.fleet import creates_at_once, engines_peak
from tests.support.personas import Persona

pytestmark = [
    pytest.mark.django_db(transaction=True),  # each creating thread commits on its own connection
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions need PostgreSQL"),
]
CREATES = 10
SLOTS = 2  # the fleet fixture's local provider
USD = 1_000_000
SMOL = {"name": "c", "model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local", "replicas": 1}


def test_ten_creates_at_once_never_run_more_engines_than_the_provider_has_slots(
    alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 100 * USD)
    local = LocalDriver(slug="local", config=Provider.objects.get(slug="local").config | {"tag": fleet})
    with engines_peak(local, fleet) as peak:
        answers = creates_at_once(alice.auth, SMOL, CREATES)
        statuses = sorted(status for status, _ in answers)
        assert len(answers) == CREATES and set(statuses) <= {201, 409}, answers  # no 5xx
        refused = [body for status, body in answers if status == 409]
        assert all(body["error"]["type"] == "no_capacity" for body in refused), refused
        created = [body["id"] for status, body in answers if status == 201]
        instances = Instance.objects.filter(deployment_id__in=created)
        assert instances.count() == len(created)
        placed = instances.filter(state__in=LIVE_STATES)
        waiting = instances.filter(state=InstanceState.WAITING_FOR_CAPACITY)
        assert placed.count() == SLOTS and waiting.count() == len(created) - SLOTS
        assert len(local.list_instances(fleet)) == SLOTS

        # A slot frees: the reconciler's next round (beat, every 30 s) gives it to one that waited.
        freed = placed.first()
        assert freed is not None
        with django_capture_on_commit_callbacks(execute=True):
            Client().delete(f"/api/v1/deployments/{freed.deployment_id}", **alice.auth)
        assert Deployment.objects.get(pk=freed.deployment_id).status == "stopped"
        with django_capture_on_commit_callbacks(execute=True):
            fleet_reconcile(now=timezone.now() + timedelta(seconds=30))
        assert instances.filter(state__in=LIVE_STATES).count() == SLOTS
        assert waiting.count() == len(created) - SLOTS - 1
        assert len(local.list_instances(fleet)) == SLOTS
    assert peak == [SLOTS]
