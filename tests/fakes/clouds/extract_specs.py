"""Regenerate tests/fakes/clouds/specs/<cloud>.json, the part of each GPU cloud's published OpenAPI
description that the drivers use, from the descriptions themselves:

    python -m tests.fakes.clouds.extract_specs [path/to/reference/providers] [--second <cloud>=<checkout>]

Keeps, per cloud, the paths in USED (whole path items: every method of them), the components they
reference (transitively), the security schemes and the servers; drops the prose (summaries,
examples; descriptions are emptied), which validation does not read. The test clouds validate every request and
answer against these extracts, so a clean clone needs no copy of the full descriptions;
tests/fleet/clouds/test_specs.py checks that the extracts still equal a fresh extraction wherever the
full descriptions are at hand (../shared/reference/providers).

Second sources (SECOND): paths a cloud's driver uses that its description in reference/providers lacks,
taken from the cloud's own published OpenAPI repository, a multi-file YAML description whose $refs
name other files; they are inlined here like the bundled descriptions inline theirs. DigitalOcean's
droplets description has no Cloud Firewalls: they come from github.com/digitalocean/openapi at the
commit named, read from a checkout of it given as `--second digitalocean=path/to/openapi`
(`git clone https://github.com/digitalocean/openapi && git -C openapi checkout <commit>`). Without
that checkout, the paths from the second source are kept as the current extract has them, so a
regeneration from reference/providers alone changes nothing it cannot see.
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
                                               "/v2/catalog/gpus", "/v2/catalog/datacenters",
                                               "/v2/network-volumes", "/v2/network-volumes/{id}"]),
    "vastai": ("vastai.openapi.yaml", ["/api/v0/bundles", "/api/v0/asks/{id}", "/api/v0/instances/{id}",
                                       "/api/v1/instances", "/api/v0/instances/request_logs/{id}",
                                       "/api/v0/volumes", "/api/v0/volumes/search"]),
    "lambda": ("lambda-cloud.openapi.json", ["/api/v1/instance-types", "/api/v1/instances", "/api/v1/instances/{id}",
                                             "/api/v1/instance-operations/launch",
                                             "/api/v1/instance-operations/terminate", "/api/v1/firewall-rulesets",
                                             "/api/v1/firewall-rulesets/{id}", "/api/v1/ssh-keys", "/api/v1/images",
                                             "/api/v1/file-systems", "/api/v1/filesystems",
                                             "/api/v1/filesystems/{id}"]),
    "digitalocean": ("digitalocean-droplets.openapi.json", ["/v2/sizes", "/v2/regions", "/v2/droplets",
                                                            "/v2/droplets/{droplet_id}", "/v2/account/keys",
                                                            "/v2/tags", "/v2/volumes", "/v2/volumes/{volume_id}",
                                                            "/v2/volumes/{volume_id}/actions"]),
}  # fmt: skip

# cloud -> (repository@commit, its description's root file, the paths taken from it)
SECOND: dict[str, tuple[str, str, list[str]]] = {
    "digitalocean": ("digitalocean/openapi@7c1300c479fed9c353cda9fc21cd968619552304",
                     "specification/DigitalOcean-public.v2.yaml", ["/v2/firewalls", "/v2/firewalls/{firewall_id}"]),
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
    return _without_dangling_discriminators(_without_prose(kept))


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


def second_paths(checkout: Path, root: str, paths: list[str]) -> dict[str, Any]:
    """`paths` of the multi-file description at `checkout`/`root`, every $ref to another file (or to a
    place in one) inlined, prose dropped."""
    files: dict[Path, Any] = {}

    def load(path: Path) -> Any:
        if path not in files:
            files[path] = yaml.safe_load(path.read_text())
        return files[path]

    def inline(node: Any, base: Path) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and not ref.startswith("#/components/"):
                target_file, _, pointer = ref.partition("#")
                where = (base.parent / target_file).resolve() if target_file else base
                return inline(_pointed(load(where), pointer), where)
            return {k: inline(v, base) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v, base) for v in node]
        return node

    root_file = (checkout / root).resolve()
    described = load(root_file)["paths"]
    return {p: _without_prose(inline(described[p], root_file)) for p in paths}


def _without_dangling_discriminators(node: Any) -> Any:
    """DigitalOcean's bundled description keeps discriminator mappings that name files of its
    multi-file source ("models/volume_action_post_resize.yml", POST /v2/volumes/{id}/actions), which
    no validator can resolve: such a discriminator is dropped, and the anyOf it sits on still checks
    the body against each of its alternatives."""
    if isinstance(node, dict):
        mapping = (node.get("discriminator") or {}).get("mapping") or {}
        dangling = any(not str(target).startswith("#") for target in mapping.values())
        kept = {k: v for k, v in node.items() if not (dangling and k == "discriminator")}
        return {k: _without_dangling_discriminators(v) for k, v in kept.items()}
    if isinstance(node, list):
        return [_without_dangling_discriminators(v) for v in node]
    return node


def _pointed(document: Any, pointer: str) -> Any:
    """The part of `document` a JSON pointer ("/a/b") names; the whole for an empty one."""
    for part in [p for p in pointer.split("/") if p]:
        document = document[part.replace("~1", "/").replace("~0", "~")]
    return document


def load_full(directory: Path, filename: str) -> dict[str, Any]:
    text = (directory / filename).read_text()
    return yaml.safe_load(text) if filename.endswith((".yaml", ".yml")) else json.loads(text)


def extracted(directory: Path, cloud: str, second: Path | None = None) -> dict[str, Any]:
    """The extract of `cloud` from its description in `directory`, with the paths of its second source
    from the checkout `second`, or as the current extract has them when there is none."""
    filename, paths = USED[cloud]
    kept = extract(load_full(directory, filename), paths)
    if cloud in SECOND:
        _, root, second_used = SECOND[cloud]
        if second is not None:
            kept["paths"].update(second_paths(second, root, second_used))
        else:
            current = json.loads((SPECS / f"{cloud}.json").read_text())["paths"]
            kept["paths"].update({p: current[p] for p in second_used if p in current})
    return kept


def main(argv: list[str]) -> None:
    args = argv[1:]
    seconds: dict[str, Path] = {}
    while "--second" in args:
        at = args.index("--second")
        cloud, _, checkout = args[at + 1].partition("=")
        seconds[cloud] = Path(checkout)
        del args[at : at + 2]
    directory = Path(args[0]) if args else FULL
    SPECS.mkdir(exist_ok=True)
    for cloud in USED:
        spec = extracted(directory, cloud, seconds.get(cloud))
        (SPECS / f"{cloud}.json").write_text(json.dumps(spec, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv)
