"""The extracts of the clouds' published OpenAPI descriptions that the test clouds validate against
(tests/fakes/clouds/specs/) are valid descriptions holding every path the drivers use, and equal a
fresh extraction from the published descriptions wherever those are at hand (a clean clone elsewhere
has only the extracts)."""

from __future__ import annotations

import json

import pytest

from tests.fakes.clouds.base import openapi
from tests.fakes.clouds.extract_specs import FULL, SECOND, SPECS, USED, extracted


@pytest.mark.parametrize("cloud", sorted(USED))
def test_each_extract_is_a_valid_description_with_every_path_its_driver_uses(cloud: str) -> None:
    openapi(cloud)  # parsed and checked against the OpenAPI schema (openapi-spec-validator)
    paths = set(json.loads((SPECS / f"{cloud}.json").read_text())["paths"])
    assert set(USED[cloud][1]) | set(SECOND.get(cloud, ("", "", []))[2]) == paths


@pytest.mark.parametrize("cloud", sorted(USED))
def test_each_extract_equals_a_fresh_extraction_from_the_published_description(cloud: str) -> None:
    if not (FULL / USED[cloud][0]).exists():
        pytest.skip(f"the published descriptions are not at {FULL} on this machine")
    assert extracted(FULL, cloud) == json.loads((SPECS / f"{cloud}.json").read_text())
