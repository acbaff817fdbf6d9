"""Stored offers: a refresh makes a provider's rows what its driver lists (a provider error keeps them
until they expire); readers use the table and never ask a driver; a launch refused for capacity, a launch
and a confirmed end ask the provider again."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any
from unittest.mock import patch

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from catalog.models import CatalogModel, Offer, Provider
from catalog.selectors import deploy_options, offers_for
from deployments.models import Deployment
from fleet import offers, provisioning
from fleet import tasks as fleet_tasks
from fleet.models import Instance
from fleet.offers import offers_refresh, offers_refresh_all
from fleet.providers import base
from fleet.providers.base import Driver, InstanceSpec, InstanceState, ProviderError, ProviderInstance
from fleet.providers.local.driver import LocalDriver
from tests.deployments.test_pages import signed_in
from tests.support.billing import fund
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
USD = 1_000_000
REFRESH = "fleet.tasks.offers_refresh_task"
# gpu type, count, region, tier, spot, price, cost, available
H100 = ["h100", 1, "atl1", "secure", False, 4_000_000, 3_000_000, 2]
A100_SPOT = ["a100-80gb", 1, "atl1", "community", True, 1_500_000, 1_000_000, 5]
H100_SPOT = ["h100", 1, "atl1", "community", True, 1_000_000, 700_000, 3]
B300 = ["b300", 8, "atl1", "secure", False, 40_000_000, 30_000_000, 1]  # a GPU the catalog does not know
FIELDS = ("provider_id", "gpu_type", "gpu_count", "region", "tier", "spot", "price_per_hour_micros",
          "cost_per_hour_micros", "available")  # fmt: skip


class Listing(Driver):
    """A provider whose offers are its config's "offers" (or whose listing fails with "fail")."""

    def offers(self) -> list[base.Offer]:
        if "fail" in self.config:
            raise ProviderError(self.config["fail"])
        return [base.Offer(self.slug, g, n, r, base.Tier(t), s, p, c, a) for g, n, r, t, s, p, c, a in
                self.config["offers"]]  # fmt: skip

    def launch(self, spec: InstanceSpec, offer: base.Offer) -> ProviderInstance:
        raise NotImplementedError

    def status(self, provider_instance_id: str) -> ProviderInstance:
        raise NotImplementedError

    def terminate(self, provider_instance_id: str) -> None:
        raise NotImplementedError

    def list_instances(self, tag: str) -> list[ProviderInstance]:
        return []

    def logs(self, provider_instance_id: str, *, tail: int = 200) -> list[str]:
        return []

    def endpoint(self, provider_instance_id: str) -> str:
        raise NotImplementedError


def listing(slug: str, *listed: list[object], **config: object) -> Provider:
    return Provider.objects.create(slug=slug, name=slug, driver="tests.fleet.test_offers.Listing",
                                   config={"offers": list(listed), **config})  # fmt: skip


def relist(provider: Provider, *listed: list[object], **config: object) -> None:
    provider.config = {"offers": list(listed), **config}
    provider.save(update_fields=["config"])


def stored(provider: Provider) -> list[tuple[object, ...]]:
    return list(Offer.objects.filter(provider=provider).order_by("gpu_type").values_list(*FIELDS))


def test_a_refresh_stores_what_the_driver_lists(db: None) -> None:
    cloud = listing("cloud", H100, A100_SPOT, B300)
    before = timezone.now()
    assert offers_refresh(cloud) == 3
    assert stored(cloud) == [
        ("cloud", "a100-80gb", 1, "atl1", "community", True, 1_500_000, 1_000_000, 5),
        ("cloud", "b300", 8, "atl1", "secure", False, 40_000_000, 30_000_000, 1),
        ("cloud", "h100", 1, "atl1", "secure", False, 4_000_000, 3_000_000, 2),
    ]
    assert {o.seen_at for o in Offer.objects.all()} == {Offer.objects.first().seen_at}  # type: ignore[union-attr]
    assert before <= Offer.objects.get(gpu_type="h100").seen_at <= timezone.now()


def test_a_refresh_replaces_the_providers_rows_and_deletes_what_it_no_longer_lists(db: None) -> None:
    cloud, other = listing("cloud", H100, A100_SPOT), listing("other", H100)
    offers_refresh(cloud), offers_refresh(other)
    relist(cloud, [*H100[:5], 3_500_000, 3_000_000, 0], B300)  # the H100 got cheaper and is full; no more A100
    assert offers_refresh(cloud) == 2
    assert stored(cloud) == [
        ("cloud", "b300", 8, "atl1", "secure", False, 40_000_000, 30_000_000, 1),
        ("cloud", "h100", 1, "atl1", "secure", False, 3_500_000, 3_000_000, 0),
    ]
    assert stored(other) == [("other", "h100", 1, "atl1", "secure", False, 4_000_000, 3_000_000, 2)]
    # Readers: cheapest first, then the most available.
    assert [(o.provider_id, o.available) for o in offers_for(gpu_type="h100", region="atl1")] == [
        ("cloud", 0), ("other", 2),
    ]  # fmt: skip
    relist(cloud, [*H100[:5], 4_000_000, 3_000_000, 1])
    offers_refresh(cloud)
    assert [(o.provider_id, o.available) for o in offers_for(gpu_type="h100", region="atl1")] == [
        ("other", 2), ("cloud", 1),
    ]  # fmt: skip


def test_a_provider_error_keeps_the_rows(db: None) -> None:
    cloud = listing("cloud", H100)
    offers_refresh(cloud)
    before = list(Offer.objects.values_list(*FIELDS, "seen_at"))
    relist(cloud, fail="503 from the cloud's API")
    assert offers_refresh(cloud) is None
    assert list(Offer.objects.values_list(*FIELDS, "seen_at")) == before
    assert len(offers_for(gpu_type="h100", region="atl1")) == 1


def test_expired_offers_are_ignored_then_deleted(db: None) -> None:
    cloud, other = listing("cloud", H100), listing("other", A100_SPOT)
    offers_refresh_all()
    relist(cloud, fail="the cloud keeps failing")
    max_age = timedelta(seconds=settings.GPUCLOUD_OFFER_MAX_AGE_SECONDS)
    Offer.objects.filter(provider=cloud).update(seen_at=timezone.now() - max_age - timedelta(seconds=1))
    assert offers_for(gpu_type="h100", region="atl1") == []  # still stored, no longer offered
    assert Offer.objects.filter(provider=cloud).count() == 1
    assert offers_refresh_all() == {"cloud": None, "other": 1}
    assert stored(cloud) == [] and len(stored(other)) == 1


def test_beat_asks_a_provider_no_more_often_than_its_refresh_interval(db: None) -> None:
    slow, plain = listing("slow", H100, offers_refresh_seconds=300), listing("plain", H100)
    assert offers_refresh_all() == {"plain": 1, "slow": 1}
    relist(slow, H100, A100_SPOT, offers_refresh_seconds=300)
    relist(plain, H100, A100_SPOT)
    assert offers_refresh_all() == {"plain": 2, "slow": 1}  # slow keeps its rows until its interval is up
    Offer.objects.filter(provider=slow).update(seen_at=timezone.now() - timedelta(seconds=301))
    assert offers_refresh_all() == {"plain": 2, "slow": 2}
    assert offers_refresh(slow) == 2  # a refresh asked for (after a launch, say) is never held back


def test_a_disabled_provider_offers_nothing(db: None) -> None:
    cloud = listing("cloud", H100)
    offers_refresh(cloud)
    Provider.objects.filter(slug="cloud").update(enabled=False)
    assert offers_for(gpu_type="h100", region="atl1") == []  # at once, before any refresh
    fleet_tasks.offers_refresh_task("cloud")
    assert stored(cloud) == []


def test_deploy_options_read_the_table(catalog: None) -> None:
    """Per GPU and region: the cheapest price any provider asks, their availability together; GPUs the
    catalog does not know, expired offers and spot offers (a deploy is on-demand unless it asks) are
    left out."""
    offers_refresh(listing("cloud", H100, B300))
    offers_refresh(listing("other", [*H100[:5], 3_000_000, 2_000_000, 1], A100_SPOT, H100_SPOT))
    offers_refresh(listing("old", [*H100[:5], 1_000_000, 1, 9]))
    Offer.objects.filter(provider_id="old").update(seen_at=timezone.now() - timedelta(days=1))
    options = deploy_options(CatalogModel.objects.get(slug="llama-3.1-8b-instruct"))
    assert [(o.key, o.price_per_hour_micros, o.available) for o in options] == [("h100@atl1", 3_000_000, 3)]


def test_a_deployment_runs_on_the_kind_of_offer_it_asked_for_and_says_which(catalog: None, alice: Persona) -> None:
    """On-demand unless spot is asked for, and then spot only: never the other kind at its price."""
    offers_refresh(listing("cloud", H100, H100_SPOT))
    assert [o.spot for o in offers_for(gpu_type="h100", region="atl1")] == [False]
    assert [o.spot for o in offers_for(gpu_type="h100", region="atl1", spot=True)] == [True]
    fund(alice.org, 10 * USD)
    client = Client()
    body = {"model_id": "llama-3.1-8b-instruct", "gpu_type": "h100", "region": "atl1"}
    with patch("fleet.tasks.instance_provision_task.delay"):
        plain = client.post("/api/v1/deployments", body, content_type="application/json", **alice.auth).json()
        spot = client.post("/api/v1/deployments", {**body, "spot": True}, content_type="application/json",
                           **alice.auth).json()  # fmt: skip
    assert (plain["spot"], plain["instances"][0]["spot"]) == (False, False)
    assert Deployment.objects.get(pk=plain["id"]).hourly_price_micros == 4_000_000
    assert spot["spot"] is True and Deployment.objects.get(pk=spot["id"]).hourly_price_micros == 1_000_000
    relist(Provider.objects.get(slug="cloud"), H100)
    offers_refresh(Provider.objects.get(slug="cloud"))
    gone = client.post("/api/v1/deployments", {**body, "spot": True}, content_type="application/json", **alice.auth)
    assert gone.status_code == 409 and gone.json()["error"]["message"] == "No provider offers spot NVIDIA H100 in atl1."


def test_the_beat_refreshes_every_provider() -> None:
    assert settings.CELERY_BEAT_SCHEDULE["offers-refresh"] == {"task": REFRESH, "schedule": 60.0}
    assert settings.GPUCLOUD_OFFERS_REFRESH_SECONDS == 60 and settings.GPUCLOUD_OFFER_MAX_AGE_SECONDS == 300


def test_the_task_without_a_provider_refreshes_them_all(db: None) -> None:
    listing("cloud", H100), listing("other", A100_SPOT)
    fleet_tasks.offers_refresh_task()
    assert sorted(Offer.objects.values_list("provider_id", flat=True)) == ["cloud", "other"]


def test_load_catalog_stores_the_offers_a_fresh_platform_shows(db: None) -> None:
    out = io.StringIO()
    call_command("load_catalog", stdout=out)
    assert "Offers of local: 1 stored." in out.getvalue()
    assert stored(Provider.objects.get(slug="local")) == [
        ("local", "cpu", 1, "local", "secure", False, settings.GPUCLOUD_LOCAL_PRICE_MICROS, 0,
         settings.GPUCLOUD_LOCAL_SLOTS),
    ]  # fmt: skip


# --- no request asks a driver ---------------------------------------------------------------


@pytest.fixture
def driver_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every offers() call to the local driver, from now on (the fleet fixture stored its offers)."""
    calls: list[str] = []

    def counted(self: LocalDriver) -> list[base.Offer]:
        calls.append(self.slug)
        return []

    monkeypatch.setattr(LocalDriver, "offers", counted)
    return calls


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[object, ...]]]:
    """The offer refreshes asked for (and still run after commit)."""
    sent: list[tuple[str, tuple[object, ...]]] = []

    def record(name: str, *args: Any, countdown: float | None = None) -> None:
        sent.append((name, args))
        real_enqueue(name, *args, countdown=countdown)

    real_enqueue = offers.enqueue
    monkeypatch.setattr(offers, "enqueue", record)
    return sent


def create(client: Client, persona: Persona) -> Any:
    body = {"name": "chat", "model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local"}
    return client.post("/api/v1/deployments", data=json.dumps(body), content_type="application/json",
                       **persona.auth)  # fmt: skip


def test_deploy_provision_and_the_model_page_ask_no_driver_for_offers(
    client: Client, alice: Persona, fleet: str, driver_calls: list[str], enqueued: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    def launch(self: LocalDriver, spec: InstanceSpec, offer: base.Offer) -> ProviderInstance:
        assert (offer.provider, offer.gpu_type, offer.price_per_hour_micros) == ("local", "cpu", 50_000)
        return ProviderInstance("p-1", spec.instance_id, spec.tag, InstanceState.RUNNING, "http://127.0.0.1:9",
                                timezone.now())  # fmt: skip

    monkeypatch.setattr(LocalDriver, "launch", launch)
    fund(alice.org, 10 * USD)
    created = create(client, alice)  # provisioning waits for a commit that does not come here
    assert created.status_code == 201, created.content
    assert Deployment.objects.get().hourly_price_micros == 50_000  # the stored offer's price
    instance = Instance.objects.get()
    assert provisioning.instance_provision(instance.pk) == "launched"
    instance.refresh_from_db()
    assert (instance.state, instance.provider, instance.hourly_price_micros) == ("loading", "local", 50_000)
    page = signed_in(alice).get("/catalog/smollm2-135m-instruct/").content.decode()
    assert 'value="cpu@local" checked' in page
    assert driver_calls == []
    assert enqueued == [(REFRESH, ("local",))]  # the launch took a slot: the offers are asked again
    provisioning.instance_gone(instance.pk, None, "Terminated.")
    assert enqueued == [(REFRESH, ("local",))] * 2  # and the end gave it back


def test_a_launch_refused_for_capacity_refreshes_that_providers_offers(
    client: Client, alice: Persona, fleet: str, enqueued: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    # The machine filled up since the last refresh: the stored offer still says two free slots.
    config = Provider.objects.get(slug="local").config
    Provider.objects.filter(slug="local").update(config={**config, "slots": 0})
    assert Offer.objects.get(provider_id="local").available == 2
    fund(alice.org, 10 * USD)
    with django_capture_on_commit_callbacks(execute=True):
        created = create(client, alice)
    assert created.status_code == 201, created.content
    assert Instance.objects.get().state == "waiting_for_capacity"
    assert enqueued == [(REFRESH, ("local",))]
    assert Offer.objects.get(provider_id="local").available == 0  # the refresh ran after the commit
