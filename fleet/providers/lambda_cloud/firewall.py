"""The Lambda firewall ruleset every VM of a provider is launched with, one per region (Lambda's rulesets
are regional), found again by its name so that launches reuse it instead of piling up copies.

Lambda's firewall admits only what some rule allows (its default global ruleset: SSH and ICMP), so the
ruleset must open the engine port or the gateway cannot reach the engine at all. It admits exactly the
platform's addresses (`allow_from`) on the engine port, and SSH from them too; with no allow_from, anyone
(the per-instance secret is then the only guard, as on clouds without a firewall). The VM's own iptables
rules (fleet/providers/cloud/boot.py) say the same a second time.

A ruleset whose rules differ from these (allow_from or engine_port changed since it was made) is updated in
place, so machines already running get the new rules too.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fleet.providers.cloud.api import CloudApi
from fleet.providers.lambda_cloud.client import data_of
from fleet.providers.lambda_cloud.options import SSH_PORT, LambdaOptions

RULESETS = "/api/v1/firewall-rulesets"
MAX_NAME = 64


def ruleset_name(provider: str) -> str:
    return f"gpucloud-{provider}"[:MAX_NAME]


def ruleset_rules(options: LambdaOptions) -> list[dict[str, Any]]:
    port = options.engine_port
    rules: list[dict[str, Any]] = []
    for source in options.sources:
        rules.append({"protocol": "tcp", "port_range": [port, port], "source_network": source,
                      "description": "gpucloud engine"})  # fmt: skip
        rules.append({"protocol": "tcp", "port_range": [SSH_PORT, SSH_PORT], "source_network": source,
                      "description": "SSH"})  # fmt: skip
    return rules


def ruleset_ensure(api: CloudApi, *, name: str, region: str, rules: list[dict[str, Any]]) -> str:
    """The id of our ruleset in `region`, made or brought up to date; the oldest of several with the name
    (two first launches at once may each have made one) is the one used."""
    listed = data_of(api.call("GET", RULESETS), "listing firewall rulesets")
    ours = sorted(
        (r for r in listed if r.get("name") == name and (r.get("region") or {}).get("name") == region),
        key=lambda r: (str(r.get("created")), str(r.get("id"))),
    )
    if not ours:
        body = {"name": name, "region": region, "rules": rules}
        return str(data_of(api.call("POST", RULESETS, json_body=body), "creating a firewall ruleset")["id"])
    ruleset_id = str(ours[0]["id"])
    if _normal(ours[0].get("rules") or []) != _normal(rules):
        api.call("PATCH", f"{RULESETS}/{ruleset_id}", json_body={"rules": rules})
    return ruleset_id


def _normal(rules: list[dict[str, Any]]) -> set[tuple[str, tuple[int, ...], str]]:
    """Rules as what they admit (descriptions do not matter)."""
    return {_admits(rule) for rule in rules}


def _admits(rule: dict[str, Any]) -> tuple[str, tuple[int, ...], str]:
    source = str(rule.get("source_network"))
    try:
        source = str(ipaddress.ip_network(source, strict=False))  # Lambda writes a bare address as /32
    except ValueError:
        pass  # not ours to judge: it differs from ours, and the update replaces it
    return str(rule.get("protocol")), tuple(int(p) for p in rule.get("port_range") or ()), source
