"""Providers as the operator manages them: the API key sealed at rest and never shown again, rotation
of the sealing key, the environment's key over the stored one, the admin's form, test-connection
action and fleet view."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.test import Client
from django.utils import timezone

from accounts.models import User
from catalog.models import Provider
from catalog.services import catalog_load, provider_credentials, provider_credentials_set
from deployments.models import Deployment, DeploymentStatus
from fleet.drivers import driver_of
from fleet.models import Instance, InstanceState
from fleet.providers.base import ProviderError
from gpucloud.core import sealed
from gpucloud.core.sealed import SealBroken, seal, unseal
from tests.support.personas import Persona

SECRET = "rpa_SECRETKEY0123456789"


@pytest.fixture
def operator(db: None) -> Client:
    User.objects.create_superuser(email="ops@example.com", password="pw-operator-1")
    client = Client()
    assert client.login(email="ops@example.com", password="pw-operator-1")
    return client


@pytest.fixture(autouse=True)
def _fresh_keys() -> Any:
    sealed._fernet.cache_clear()
    yield
    sealed._fernet.cache_clear()


def test_sealed_values_open_only_with_a_configured_key_and_survive_rotation(settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.GPUCLOUD_CREDENTIALS_KEYS = [old]
    token = seal({"api_key": SECRET})
    assert SECRET not in token and unseal(token) == {"api_key": SECRET}
    settings.GPUCLOUD_CREDENTIALS_KEYS = [new, old]  # rotation: the new key seals, the old still opens
    assert unseal(token) == {"api_key": SECRET}
    assert unseal(seal({"a": "b"})) == {"a": "b"}
    settings.GPUCLOUD_CREDENTIALS_KEYS = [new]
    with pytest.raises(SealBroken):
        unseal(token)


def test_without_a_configured_key_the_seal_is_derived_from_the_secret_key(settings: Any) -> None:
    settings.GPUCLOUD_CREDENTIALS_KEYS = []
    token = seal({"api_key": SECRET})
    assert unseal(token) == {"api_key": SECRET}
    settings.SECRET_KEY = "another-secret-key-entirely-0123456789"
    with pytest.raises(SealBroken):
        unseal(token)


def test_stored_credentials_keep_on_blank_and_the_environment_wins(db: None, monkeypatch: Any) -> None:
    provider = Provider.objects.create(slug="rp-main", name="RunPod", driver="runpod", config={})
    provider_credentials_set(provider, {"api_key": SECRET})
    provider.refresh_from_db()
    assert SECRET not in provider.credentials
    provider_credentials_set(provider, {"api_key": ""})  # a form saved without retyping the key
    assert provider_credentials(provider) == {"api_key": SECRET}
    monkeypatch.setenv("GPUCLOUD_PROVIDER_RP_MAIN_API_KEY", "from-env")
    assert provider_credentials(provider) == {"api_key": "from-env"}


def test_the_driver_gets_the_opened_key_and_a_broken_seal_is_a_permanent_error(db: None, settings: Any) -> None:
    provider = Provider.objects.create(slug="rp", name="RunPod", driver="local", config={"x": 1})
    provider_credentials_set(provider, {"api_key": SECRET})
    assert driver_of(provider).config["api_key"] == SECRET and driver_of(provider).config["x"] == 1
    settings.GPUCLOUD_CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ProviderError, match="credentials of rp cannot be opened") as broken:
        driver_of(provider)
    assert broken.value.permanent


def test_the_admin_stores_the_key_sealed_and_never_shows_it_again(operator: Client) -> None:
    typo = operator.post("/admin/catalog/provider/add/", {
        "slug": "x", "name": "X", "driver": "runpodd", "config": "{}", "api_key": SECRET,
    })  # fmt: skip
    assert typo.status_code == 200 and "No provider driver &#x27;runpodd&#x27;" in typo.content.decode()
    assert not Provider.objects.filter(slug="x").exists()
    response = operator.post("/admin/catalog/provider/add/", {
        "slug": "lambda-main", "name": "Lambda", "driver": "lambda", "enabled": "on",
        "config": '{"base_url": "http://127.0.0.1:9/", "regions": ["ric1"]}', "api_key": SECRET,
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get(slug="lambda-main")
    assert provider_credentials(provider) == {"api_key": SECRET} and SECRET not in provider.credentials
    for page in ("/admin/catalog/provider/", "/admin/catalog/provider/lambda-main/change/"):
        html = operator.get(page).content.decode()
        assert SECRET not in html and "stored: api_key" in html
    change = operator.get("/admin/catalog/provider/lambda-main/change/").content.decode()
    assert re.search(r'<input type="password" name="api_key"[^>]*>', change)
    assert "us-east-1" in change and "ric1" in change  # the name map the driver uses
    operator.post("/admin/catalog/provider/lambda-main/change/", {  # saved again without the key
        "slug": "lambda-main", "name": "Lambda (main)", "driver": "lambda", "enabled": "on", "config": "{}",
        "api_key": "",
    })  # fmt: skip
    assert provider_credentials(Provider.objects.get(slug="lambda-main")) == {"api_key": SECRET}


def test_test_connection_reports_the_offers_or_the_clouds_error_without_the_key(operator: Client) -> None:
    catalog_load()
    unreachable = Provider.objects.create(slug="rp", name="RunPod", driver="runpod",
                                          config={"base_url": "http://127.0.0.1:9", "timeout_seconds": 1})  # fmt: skip
    provider_credentials_set(unreachable, {"api_key": SECRET})
    response = operator.post("/admin/catalog/provider/", {
        "action": "test_connection", "_selected_action": ["local", "rp"],
    }, follow=True)  # fmt: skip
    html = response.content.decode()
    assert "This machine (local): connected; 1 offers ([&quot;cpu&quot;]), 1 stored." in html
    assert "RunPod (rp): RunPod could not be reached (ConnectError)." in html
    assert SECRET not in html


def test_the_fleet_view_lists_instances_with_age_cost_and_owner(operator: Client, alice: Persona) -> None:
    deployment = Deployment.objects.create(org=alice.org, name="llm", status=DeploymentStatus.ACTIVE)
    launched = timezone.now() - timedelta(minutes=3, seconds=20)
    Instance.objects.create(deployment=deployment, state=InstanceState.READY, provider="rp", tag="t", api_key="k",
                            provider_instance_id="pod-9", hourly_cost_micros=2_390_000, launched_at=launched,
                            failure_reason="Preempted once")  # fmt: skip
    response = operator.get("/admin/fleet/instance/?provider=rp")
    assert response.status_code == 200
    html = response.content.decode()
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", html, re.S)]
    for column in ("Provider", "State", "Age", "Cost/h", "Owner", "Failure reason"):
        assert column in cells
    assert {"rp", "Ready", "3 min 20 s", "$2.39", str(alice.org), "pod-9", "Preempted once"} <= set(cells)


def test_the_fleet_view_shows_cost_exactly_and_lets_no_one_add_edit_or_delete_a_row(
    operator: Client, alice: Persona
) -> None:
    """Cost/h showed "$2.39" for $2.391234 (rounded to cents, unlike every other figure), and the
    view offered "Add instance": rows are the fleet's record of what it launched, shown, never
    hand-made, edited or deleted (a deleted row would leave its machine running, unbilled)."""
    deployment = Deployment.objects.create(org=alice.org, name="llm", status=DeploymentStatus.ACTIVE)
    instance = Instance.objects.create(deployment=deployment, state=InstanceState.READY, provider="rp", tag="t",
                                       api_key="k", provider_instance_id="pod-9", hourly_cost_micros=2_391_234,
                                       launched_at=timezone.now())  # fmt: skip
    listing = operator.get("/admin/fleet/instance/").content.decode()
    assert ">$2.391234<" in listing
    assert "/admin/fleet/instance/add/" not in listing and 'name="action"' not in listing  # no delete action
    assert operator.get("/admin/fleet/instance/add/").status_code == 403
    change = operator.get(f"/admin/fleet/instance/{instance.pk}/change/")
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()  # shown, not a form
    edited = operator.post(f"/admin/fleet/instance/{instance.pk}/change/", {"state": "failed", "provider": "x"})
    assert edited.status_code == 403
    assert operator.post(f"/admin/fleet/instance/{instance.pk}/delete/", {"post": "yes"}).status_code == 403
    instance.refresh_from_db()
    assert (instance.state, instance.provider) == (InstanceState.READY, "rp")
    page = operator.get(f"/admin/deployments/deployment/{deployment.pk}/change/").content.decode()
    # The deployment's replicas inline: none to add (no more forms than rows), none to delete.
    assert 'name="instances-MAX_NUM_FORMS" value="0"' in page and 'name="instances-0-DELETE"' not in page
