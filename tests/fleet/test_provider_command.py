"""`manage.py provider_set`: an operator adds or updates a provider from the shell, its key sealed and
never echoed, a mistyped driver refused, and `--test` lists the cloud's offers and stores them (against
a test cloud started as `python -m tests.fakes.clouds.serve` starts it)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Offer, Provider
from catalog.services import provider_credentials
from tests.fakes.clouds import serve
from tests.fakes.clouds.base import FakeCloud

SECRET = "rpa_SECRETKEY0123456789"
CONFIG = {"base_url": "http://127.0.0.1:9", "timeout_seconds": 1}


def provider_set(slug: str, *args: str, stdin: str | None = None, **options: Any) -> tuple[str, str]:
    """Run the command; what it wrote to stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    extra = {"stdin": io.StringIO(stdin)} if stdin is not None else {}
    call_command("provider_set", slug, *args, stdout=out, stderr=err, **extra, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def runpod_cloud() -> Iterator[FakeCloud]:
    cloud = serve.start("runpod")
    yield cloud
    cloud.stop()
    assert cloud.schema_errors == []


def test_the_key_is_stored_sealed_and_never_echoed(db: None) -> None:
    out, err = provider_set("rp", "--driver", "runpod", "--name", "RunPod", "--config", json.dumps(CONFIG),
                            "--api-key-stdin", stdin=f"{SECRET}\n")  # fmt: skip
    assert out == "Added provider rp ('RunPod', driver runpod, enabled); API key stored sealed.\n"
    assert err == ""
    provider = Provider.objects.get(slug="rp")
    assert (provider.name, provider.driver, provider.enabled, provider.config) == ("RunPod", "runpod", True, CONFIG)
    assert SECRET not in provider.credentials and provider_credentials(provider) == {"api_key": SECRET}


def test_an_update_keeps_what_it_does_not_name_and_the_key_can_come_from_the_environment(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider_set("rp", "--driver", "runpod", "--name", "RunPod", "--config", json.dumps(CONFIG),
                 "--api-key-stdin", stdin=SECRET)  # fmt: skip
    out, _ = provider_set("rp", "--disable")
    assert out == "Updated provider rp ('RunPod', driver runpod, disabled); API key stored sealed.\n"
    provider = Provider.objects.get(slug="rp")
    assert (provider.driver, provider.enabled, provider.config) == ("runpod", False, CONFIG)
    assert provider_credentials(provider) == {"api_key": SECRET}
    monkeypatch.setenv("RUNPOD_KEY", "rpa_ROTATED")
    out, _ = provider_set("rp", "--api-key-env", "RUNPOD_KEY")
    assert "rpa_ROTATED" not in out and "enabled" in out
    assert provider_credentials(Provider.objects.get(slug="rp")) == {"api_key": "rpa_ROTATED"}


def test_a_mistyped_driver_is_refused_with_the_known_ones_and_nothing_is_stored(db: None) -> None:
    with pytest.raises(CommandError) as refused:
        provider_set("rp", "--driver", "runpood", "--api-key-stdin", stdin=SECRET)
    assert str(refused.value) == (
        "No provider driver 'runpood': runpood is not a driver class. "
        "Known drivers: local, kubernetes, runpod, vastai, lambda, digitalocean."
    )
    assert SECRET not in str(refused.value)
    assert not Provider.objects.filter(slug="rp").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "{nope"], "--config is not JSON"),
        (["--config", "[1]"], "--config must be a JSON object"),
        (["--config", json.dumps({"api_key": SECRET})], "--config holds an api_key"),
        (["--api-key-env", "GPUCLOUD_TEST_UNSET_VARIABLE"], "GPUCLOUD_TEST_UNSET_VARIABLE is not set"),
        (["--api-key-stdin"], "standard input held no key"),
        ([], "Not saved: driver: This field cannot be blank."),  # a new provider needs its driver
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(db: None, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message) as refused:
        provider_set("rp", *args, stdin="")
    assert SECRET not in str(refused.value)
    assert not Provider.objects.filter(slug="rp").exists()


def test_a_bad_slug_is_refused(db: None) -> None:
    with pytest.raises(CommandError, match="Not saved: slug: Enter a valid “slug”"):
        provider_set("Run Pod", "--driver", "runpod")
    assert Provider.objects.count() == 0


def test_test_lists_the_offers_of_a_running_test_cloud_and_stores_them(db: None, runpod_cloud: FakeCloud) -> None:
    config = json.dumps(serve.RUNNERS["runpod"].config(runpod_cloud))
    out, _ = provider_set("runpod-test", "--driver", "runpod", "--config", config, "--api-key-stdin", "--test",
                          stdin=runpod_cloud.api_key)  # fmt: skip
    assert out.splitlines() == [
        "Added provider runpod-test ('runpod-test', driver runpod, enabled); API key stored sealed.",
        "Test of runpod-test: 40 offers listed (a100-80gb, h100, l40s, mi300x, mi300x_8, rtx-4090); 40 stored.",
    ]
    stored = Offer.objects.filter(provider_id="runpod-test")
    assert stored.count() == 40
    assert set(stored.values_list("region", flat=True)) == {"atl1", "nyc2", "tor1", "ric1"}


def test_test_says_the_clouds_error_and_stores_nothing(db: None, runpod_cloud: FakeCloud) -> None:
    config = json.dumps(serve.RUNNERS["runpod"].config(runpod_cloud))
    with pytest.raises(CommandError) as failed:
        provider_set("runpod-test", "--driver", "runpod", "--config", config, "--api-key-stdin", "--test",
                     stdin="rpa_WRONG")  # fmt: skip
    assert str(failed.value).startswith("Test of runpod-test failed: RunPod")
    assert "rpa_WRONG" not in str(failed.value)
    assert Provider.objects.filter(slug="runpod-test").exists()  # saved: the operator fixes the key next
    assert Offer.objects.filter(provider_id="runpod-test").count() == 0
