"""The test clouds as an operator runs them by hand (tests/fakes/clouds/serve.py): each is stocked with
the catalog's GPUs in the catalog's regions, as far as the cloud has names for them, and tells the
operator a config that works and holds no key."""

from __future__ import annotations

import json

import pytest

from fleet.providers.base import VolumeSpec
from fleet.providers.registry import driver_for
from tests.fakes.clouds import serve

ALL_REGIONS = {"atl1", "nyc2", "ric1", "tor1"}


@pytest.mark.parametrize(
    ("name", "gpu_types", "regions"),
    [
        ("runpod", {"h100", "a100-80gb", "l40s", "rtx-4090", "mi300x", "mi300x_8"}, ALL_REGIONS),
        ("vastai", {"h100", "a100-80gb", "l40s", "rtx-4090"}, ALL_REGIONS),
        ("lambda", {"h100", "a100-80gb"}, {"atl1", "ric1"}),
        ("digitalocean", {"h100", "l40s", "mi300x", "mi300x_8", "mi325x", "mi325x_8"}, ALL_REGIONS),
    ],
)
def test_each_runner_offers_the_catalogs_gpus_it_can_name_in_its_regions(
    name: str, gpu_types: set[str], regions: set[str]
) -> None:
    cloud = serve.start(name)
    try:
        config = serve.RUNNERS[name].config(cloud)
        offers = driver_for(slug=name, driver=name, config={**config, "api_key": cloud.api_key}).offers()
        introduction = serve.introduction(name, cloud)
    finally:
        cloud.stop()
    assert {o.gpu_type for o in offers} == gpu_types
    assert {o.region for o in offers} == regions
    assert all(o.available >= 1 for o in offers)
    assert "api_key" not in config and f"API key it accepts: {cloud.api_key}" in introduction
    assert f"--config '{json.dumps(config)}' --api-key-stdin --test" in introduction
    assert cloud.schema_errors == []


def test_the_vast_runner_rents_volume_space_in_each_region_so_a_pod_with_a_volume_launches() -> None:
    """A Vast volume is disk rented on a host machine (a volume offer): without any, a pod with a volume
    on the hand-run test cloud stayed provisioning, its volume never made."""
    cloud = serve.start("vastai")
    try:
        config = serve.RUNNERS["vastai"].config(cloud)
        driver = driver_for(slug="vastai", driver="vastai", config={**config, "api_key": cloud.api_key})
        made = [driver.volume_create(VolumeSpec(f"vol_{region}", "t", region, 20, region)) for region in ALL_REGIONS]
    finally:
        cloud.stop()
    assert len({volume.provider_volume_id for volume in made}) == len(ALL_REGIONS)
    assert cloud.schema_errors == []
