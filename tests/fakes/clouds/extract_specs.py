"""Regenerate tests/fakes/clouds/specs/<cloud>.json, the part of each GPU cloud's published OpenAPI
description that the drivers use, from the descriptions themselves:

    python -m tests.fakes.clouds.extract_specs [path/to/reference/providers]

Keeps, per cloud, the paths in USED (whole path items: every method of them), the components they
reference (transitively), the security schemes and the servers; drops the prose (summaries,
examples; descriptions are emptied), which validation does not read. The test clouds validate every request and
answer against these extracts, so a clean clone needs no copy of the full descriptions;
tests/fleet/clouds/test_specs.py checks that the extracts still equal a fresh extraction wherever the
full descriptions are at hand (../shared/reference/providers).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"
FULL = HERE.parents[3] / "shared" / "reference" / "providers"
PROSE = frozenset({"summary", "example", "examples", "externalDocs", "x-codeSamples"})

# cloud -> (published description, the paths its driver and test cloud use)
USED: dict[str, tuple[str, list[str]]] = {
    "runpod": ("runpod-rest-v2.openapi.json", ["/v2/pods", "/v2/pods/{id}", "/v2/pods/{id}/logs",
                                               "/v2/catalog/gpus", "/v2/catalog/datacenters"]),
    "vastai": ("vastai.openapi.yaml", ["/api/v0/bundles", "/api/v0/asks/{id}", "/api/v0/instances/{id}",
                                       "/api/v1/instances", "/api/v0/instances/request_logs/{id}"]),
    "lambda": ("lambda-cloud.openapi.json", ["/api/v1/instance-types", "/api/v1/instances", "/api/v1/instances/{id}",
                                             "/api/v1/instance-operations/launch",
                                             "/api/v1/instance-operations/terminate", "/api/v1/firewall-rulesets",
                                             "/api/v1/firewall-rulesets/{id}", "/api/v1/ssh-keys", "/api/v1/images"]),
    "digitalocean": ("digitalocean-droplets.openapi.json", ["/v2/sizes", "/v2/regions", "/v2/droplets",
                                                            "/v2/droplets/{droplet_id}", "/v2/account/keys"]),
}  # fmt: skip


def extract(full: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    kept_paths = {p: full["paths"][p] for p in paths}
    components: dict[str, dict[str, Any]] = {}
    pending = list(_refs(kept_paths))
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, section, name = ref.split("/", 3)
        target = full["components"][section][name]
        components.setdefault(section, {})[name] = target
        pending.extend(_refs(target))
    if "securitySchemes" in full.get("components", {}):
        components["securitySchemes"] = full["components"]["securitySchemes"]
    kept = {"openapi": full["openapi"], "info": {"title": full["info"]["title"], "version": full["info"]["version"]},
            "servers": full.get("servers", []), "paths": kept_paths, "components": components}  # fmt: skip
    if "security" in full:
        kept["security"] = full["security"]
    return _without_prose(kept)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/components/") else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _without_prose(node: Any, *, in_properties: bool = False) -> Any:
    """Drops prose keys and empties descriptions (a response object must have one), except where
    they are the names of properties (a field called `description`)."""
    if isinstance(node, dict):
        return {
            k: "" if k == "description" and not in_properties and isinstance(v, str)
            else _without_prose(v, in_properties=k == "properties")
            for k, v in node.items()
            if in_properties or k not in PROSE
        }  # fmt: skip
    if isinstance(node, list):
        return [_without_prose(v) for v in node]
    return node


def load_full(directory: Path, filename: str) -> dict[str, Any]:
    text = (directory / filename).read_text()
    return yaml.safe_load(text) if filename.endswith((".yaml", ".yml")) else json.loads(text)


def extracted(directory: Path, cloud: str) -> dict[str, Any]:
    filename, paths = USED[cloud]
    return extract(load_full(directory, filename), paths)


def main(argv: list[str]) -> None:
    directory = Path(argv[1]) if len(argv) > 1 else FULL
    SPECS.mkdir(exist_ok=True)
    for cloud in USED:
        (SPECS / f"{cloud}.json").write_text(json.dumps(extracted(directory, cloud), indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv)
