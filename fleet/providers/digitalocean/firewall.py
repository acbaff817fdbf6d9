"""The Cloud Firewall in front of our droplets, where the operator named the platform's addresses
(`allow_from`): one per fleet tag, found by its name, applied by tag, so every droplet carrying the
tag is behind it from its first packet, without a call per droplet.

DigitalOcean's firewalls drop whatever no rule allows, both ways: inbound, only `allow_from` on the
engine's port (SSH is closed too; an operator who wants it adds a firewall of their own on the tag:
a droplet's firewalls add up); outbound, everything (the engine pulls its image and its model).
boot.py's iptables rules on the machine say the same, a second line behind this one.

Its rules are compared on every launch and rewritten (PUT, the whole firewall) when the operator's
`allow_from` or engine port changed. A firewall may name only tags that exist: the tag is created
first (creating an existing tag is a no-op at DigitalOcean).
"""

from __future__ import annotations

import re
from typing import Any

from fleet.providers.digitalocean.api import DigitalOceanApi

EVERYWHERE = ["0.0.0.0/0", "::/0"]
OUT = ("tcp", "udp")  # every port ("0"): image and model downloads, DNS


def firewall_name(tag: str) -> str:
    """DigitalOcean's firewall names: a letter or digit, then letters, digits, '.' and '-'."""
    return re.sub(r"[^a-zA-Z0-9.-]", "-", f"{tag}-engines").lstrip(".-")


def firewall_body(*, tag: str, port: int, allow_from: tuple[str, ...]) -> dict[str, Any]:
    return {
        "name": firewall_name(tag),
        "tags": [tag],
        "inbound_rules": [{"protocol": "tcp", "ports": str(port), "sources": {"addresses": list(allow_from)}}],
        "outbound_rules": [{"protocol": p, "ports": "0", "destinations": {"addresses": EVERYWHERE}} for p in OUT],
    }


def firewall_ensure(api: DigitalOceanApi, *, tag: str, port: int, allow_from: tuple[str, ...]) -> str:
    """The firewall's id, made or brought up to date."""
    wanted = firewall_body(tag=tag, port=port, allow_from=allow_from)
    found = next((f for f in api.firewalls() if f.get("name") == wanted["name"]), None)
    if found is None:
        api.tag_create(tag)
        return str(api.firewall_create(wanted)["id"])
    if _terms(found) != _terms(wanted):
        api.firewall_update(str(found["id"]), wanted)
    return str(found["id"])


def _terms(firewall: dict[str, Any]) -> tuple[object, ...]:
    """What the firewall does, in a form that compares: its tags and its rules, order aside."""

    def rules(kind: str, side: str) -> frozenset[tuple[str, str, frozenset[str]]]:
        return frozenset(
            (str(r.get("protocol")), str(r.get("ports")), frozenset((r.get(side) or {}).get("addresses") or ()))
            for r in firewall.get(kind) or ()
        )

    return (
        frozenset(firewall.get("tags") or ()),
        rules("inbound_rules", "sources"),
        rules("outbound_rules", "destinations"),
    )
