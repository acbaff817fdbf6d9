"""Issue 17: storage volumes. Kept by a provider that keeps volumes (the local provider: a directory on
this machine), billed per GB-hour to the second for as long as they exist, grown (never shrunk) and
deleted through /api/v1/volumes; every refusal says why and writes nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Membership
from accounts.roles import Role
from billing.invariants import ledger_violations
from billing.metering import usage_charge_running
from billing.models import LedgerEntry, Service, UsageMeter
from catalog.models import Provider
from deployments.models import Volume, VolumeStatus
from deployments.volumes import volumes_reconcile
from fleet.providers.base import VolumeSpec
from fleet.providers.local.volumes import LocalVolumes
from tests.support import sim_cloud
from tests.support.api import call
from tests.support.billing import fund
from tests.support.personas import Persona

USD = 1_000_000
GB_HOUR = 274  # the default idle price, micro-USD per GB-hour


def made(client: Client, persona: Persona, capture: Any, **body: Any) -> dict[str, Any]:
    with capture(execute=True):
        created = call(client, persona, "post", "/volumes", {"name": "data", "size_gb": 20, "region": "local", **body})
    assert created.status_code == 201, created.content
    assert created.json()["status"] == "creating"
    return call(client, persona, "get", f"/volumes/{created.json()['id']}").json()


@pytest.fixture
def volumes_dir(fleet: str, settings: Any) -> Path:
    return Path(Provider.objects.get(slug="local").config["volumes_dir"])


def test_a_volume_is_made_by_its_provider_and_billed_per_gb_hour_to_the_second(
    client: Client, alice: Persona, volumes_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 5 * USD)
    shown = made(client, alice, django_capture_on_commit_callbacks)
    assert shown["status"] == "available" and shown["size_gb"] == 20 and shown["region"] == "local"
    assert shown["hourly_price_usd"] == 20 * GB_HOUR / USD
    assert (volumes_dir / shown["id"] / "data").is_dir()  # what a pod will mount

    volume = Volume.objects.get(pk=shown["id"])
    [meter] = UsageMeter.objects.filter(meter_key__startswith=volume.pk)
    assert meter.service == Service.STORAGE and meter.started_at == volume.ready_at
    assert meter.hourly_price_micros == 20 * GB_HOUR
    assert volume.ready_at is not None
    usage_charge_running(now=volume.ready_at + timedelta(seconds=1))  # no minute minimum for storage
    meter.refresh_from_db()
    assert (meter.billed_seconds, meter.billed_micros) == (1, 20 * GB_HOUR // 3600)
    usage_charge_running(now=volume.ready_at + timedelta(hours=2))
    meter.refresh_from_db()
    assert meter.billed_micros == 2 * 20 * GB_HOUR
    entries = LedgerEntry.objects.filter(transaction__metadata__meter=meter.meter_key, amount_micros__lt=0)
    assert sum(e.amount_micros for e in entries) == -2 * 20 * GB_HOUR
    assert all(e.transaction.service == Service.STORAGE for e in entries)
    assert call(client, alice, "get", f"/volumes/{volume.pk}").json()["total_cost_usd"] == 2 * 20 * GB_HOUR / USD
    assert ledger_violations() == []


def test_a_volume_grows_never_shrinks_and_bills_each_size_for_its_own_time(
    client: Client, alice: Persona, volumes_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 5 * USD)
    volume_id = made(client, alice, django_capture_on_commit_callbacks)["id"]
    for size, message in (
        (20, "Volumes only grow: it is 20 GB"),
        (10, "Volumes only grow: it is 20 GB"),
        (0, "size_gb must be between 1 and 4096"),
        (4097, "size_gb must be between 1 and 4096"),
    ):
        refused = call(client, alice, "patch", f"/volumes/{volume_id}", {"size_gb": size})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "size_gb"
        assert refused.json()["error"]["message"].startswith(message)
    assert call(client, alice, "patch", f"/volumes/{volume_id}", {"size_gb": "30"}).status_code == 422

    with django_capture_on_commit_callbacks(execute=False) as pending:
        grown = call(client, alice, "patch", f"/volumes/{volume_id}", {"size_gb": 50})
    assert grown.status_code == 200
    assert (grown.json()["status"], grown.json()["size_gb"], grown.json()["target_size_gb"]) == ("resizing", 20, 50)
    again = call(client, alice, "patch", f"/volumes/{volume_id}", {"size_gb": 60})
    assert again.status_code == 409 and "resizing" in again.json()["error"]["message"]
    assert call(client, alice, "delete", f"/volumes/{volume_id}").status_code == 409
    for callback in pending:
        callback()

    shown = call(client, alice, "get", f"/volumes/{volume_id}").json()
    assert (shown["status"], shown["size_gb"], shown["target_size_gb"]) == ("available", 50, None)
    assert LocalVolumes(volumes_dir).list(Volume.objects.get(pk=volume_id).tag)[0].size_gb == 50
    first, second = UsageMeter.objects.filter(meter_key__startswith=volume_id).order_by("started_at")
    assert first.ended_at == second.started_at  # not a second unbilled, none billed twice
    assert (first.hourly_price_micros, second.hourly_price_micros) == (20 * GB_HOUR, 50 * GB_HOUR)


def test_deleting_removes_the_data_and_stops_billing_once_the_provider_confirms(
    client: Client, alice: Persona, volumes_dir: Path, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 5 * USD)
    volume_id = made(client, alice, django_capture_on_commit_callbacks)["id"]
    (volumes_dir / volume_id / "data" / "weights.bin").write_bytes(b"x" * 1024)
    with django_capture_on_commit_callbacks(execute=True):
        deleting = call(client, alice, "delete", f"/volumes/{volume_id}")
    assert deleting.status_code == 200 and deleting.json()["status"] == "deleting"
    shown = call(client, alice, "get", f"/volumes/{volume_id}").json()
    assert shown["status"] == "deleted" and shown["deleted_at"] is not None
    assert not (volumes_dir / volume_id).exists()
    [meter] = UsageMeter.objects.filter(meter_key__startswith=volume_id)
    volume = Volume.objects.get(pk=volume_id)
    assert meter.ended_at == volume.deleted_at
    assert volume.deleted_at is not None and volume.ready_at is not None
    lifetime = int((volume.deleted_at - volume.ready_at).total_seconds())
    assert meter.billed_seconds == lifetime  # exactly its life, no minute minimum
    again = call(client, alice, "delete", f"/volumes/{volume_id}")
    assert again.status_code == 200 and again.json()["status"] == "deleted"
    assert [v["id"] for v in call(client, alice, "get", "/volumes").json()] == []  # deleted: left out of the list
    assert ledger_violations() == []


def test_a_volume_deleted_while_its_provider_makes_it_is_removed_not_leaked(
    client: Client, alice: Persona, volumes_dir: Path, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fund(alice.org, 5 * USD)
    real_create = LocalVolumes.create

    def slow_create(store: LocalVolumes, spec: Any) -> Any:  # the owner deletes it mid-creation
        with django_capture_on_commit_callbacks(execute=True):
            call(client, alice, "delete", f"/volumes/{spec.volume_id}")
        return real_create(store, spec)

    monkeypatch.setattr(LocalVolumes, "create", slow_create)
    with django_capture_on_commit_callbacks(execute=True):
        created = call(client, alice, "post", "/volumes", {"name": "data", "size_gb": 5, "region": "local"})
    volume = Volume.objects.get(pk=created.json()["id"])
    assert volume.status == VolumeStatus.DELETED
    assert not (volumes_dir / volume.pk).exists()  # made, then removed
    [meter] = UsageMeter.objects.filter(meter_key__startswith=volume.pk)
    assert meter.ended_at is not None  # billed the moments it existed, nothing after


def test_bad_input_is_refused_with_the_reason_and_nothing_written(
    client: Client, alice: Persona, charlie: Persona, volumes_dir: Path, settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    fund(alice.org, 5 * USD)
    good = {"name": "data", "size_gb": 20, "region": "local"}
    cases = [
        ({**good, "size_gb": 0}, 400, "size_gb"), ({**good, "size_gb": 4097}, 400, "size_gb"),
        ({**good, "size_gb": -5}, 400, "size_gb"), ({**good, "size_gb": "20"}, 422, "size_gb"),
        ({**good, "size_gb": 2.5}, 422, "size_gb"), ({**good, "name": "  "}, 400, "name"),
        ({**good, "name": "x" * 101}, 422, "name"), ({**good, "name": "a\u0000b"}, 422, None),
        ({**good, "region": "mars"}, 404, "region"), ({**good, "gpu_type": "tpu9"}, 404, "gpu_type"),
        ({"name": "data", "size_gb": 20}, 422, "region"),
    ]  # fmt: skip
    for body, status, param in cases:
        answer = call(client, alice, "post", "/volumes", body)
        assert answer.status_code == status, (body, answer.content)
        if param:
            assert answer.json()["error"]["param"] == param, (body, answer.content)
    broke = call(client, charlie, "post", "/volumes", good)  # $0 balance
    assert broke.status_code == 402
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 1}}):
        nowhere = call(client, alice, "post", "/volumes", {**good, "region": "atl1", "gpu_type": "h100"})
    assert nowhere.status_code == 409
    assert nowhere.json()["error"]["message"] == "No provider keeps volumes beside h100 in atl1."
    assert not Volume.objects.exists() and not UsageMeter.objects.exists()
    assert not (volumes_dir.exists() and any(volumes_dir.iterdir()))


def test_other_tenants_see_nothing_and_viewers_change_nothing(
    client: Client, alice: Persona, bob: Persona, charlie: Persona, volumes_dir: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    fund(alice.org, 5 * USD)
    volume_id = made(client, alice, django_capture_on_commit_callbacks)["id"]
    for method, body in (("get", None), ("patch", {"size_gb": 40}), ("delete", None)):
        answer = call(client, charlie, method, f"/volumes/{volume_id}", body)
        assert answer.status_code == 404 and answer.json()["error"]["message"] == f"No volume {volume_id!r}."
    assert call(client, charlie, "get", "/volumes").json() == []

    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    assert [v["id"] for v in call(client, bob, "get", "/volumes").json()] == [volume_id]
    writes: list[tuple[str, str, Any]] = [
        ("delete", f"/volumes/{volume_id}", None), ("patch", f"/volumes/{volume_id}", {"size_gb": 40}),
        ("post", "/volumes", {"name": "x", "size_gb": 1, "region": "local"}),
    ]  # fmt: skip
    for method, path, body in writes:
        assert call(client, bob, method, path, body).status_code == 403
    assert Volume.objects.get().status == VolumeStatus.AVAILABLE


def test_the_reconciler_deletes_stray_volumes_and_runs_lost_steps_again(
    client: Client, alice: Persona, volumes_dir: Path, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """No volume carrying our tag is left at a provider unknown to the database (or known as deleted);
    a volume whose step was lost (a worker gone) gets it run again."""
    fund(alice.org, 5 * USD)
    kept = made(client, alice, django_capture_on_commit_callbacks)["id"]
    gone = made(client, alice, django_capture_on_commit_callbacks)["id"]
    store = LocalVolumes(volumes_dir)
    stray = store.create(VolumeSpec(volume_id="vol_stray", tag=settings.GPUCLOUD_FLEET_TAG, name="x", size_gb=1,
                                    region="local"))  # fmt: skip
    foreign = store.create(VolumeSpec(volume_id="vol_foreign", tag="another-platform", name="x", size_gb=1,
                                      region="local"))  # fmt: skip
    Volume.objects.filter(pk=gone).update(status=VolumeStatus.DELETED)  # recorded deleted, still there
    with django_capture_on_commit_callbacks(execute=False):
        lost = call(client, alice, "post", "/volumes", {"name": "lost", "size_gb": 3, "region": "local"}).json()["id"]
    Volume.objects.filter(pk=lost).update(created_at=timezone.now() - timedelta(minutes=11))  # its task never ran

    with django_capture_on_commit_callbacks(execute=True):
        report = volumes_reconcile()
    assert sorted(report.reaped) == sorted([stray.provider_volume_id, gone]) and report.errors == []
    assert report.retried == [lost] and Volume.objects.get(pk=lost).status == VolumeStatus.AVAILABLE
    listed = {v.volume_id for v in store.list(settings.GPUCLOUD_FLEET_TAG)}
    assert listed == {kept, lost}
    assert store.list("another-platform") == [foreign]  # another tag: not ours to touch


def test_the_api_description_prices_storage_as_billing_does(client: Client) -> None:
    """Both prices (GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS, _IDLE_), where a request sizes a volume."""
    schemas = client.get("/api/v1/openapi.json").json()["components"]["schemas"]
    prices = "$0.000137 per GB-hour while a pod runs on it, $0.000274 while idle"
    for name in ("PodVolumeIn", "VolumeCreateIn"):
        assert schemas[name]["properties"]["size_gb"]["description"].endswith(f"as long as it exists: {prices}")
