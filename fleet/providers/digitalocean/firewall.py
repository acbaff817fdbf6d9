"""The Cloud Firewall in front of our droplets, where the operator named the platform's addresses
(`allow_from`): one per fleet tag, found by its name, applied by tag, so every droplet carrying the
tag is behind it from its first packet, without a call per droplet. Where `allow_from` is empty, the
per-instance secret is the only guard, and a firewall of ours left from before is removed (else it
would keep admitting only the addresses the operator dropped).

DigitalOcean's firewalls drop whatever no rule allows, both ways: inbound, only `allow_from` on the
engine's port (SSH is closed too; an operator who wants it adds a firewall of their own on the tag:
a droplet's firewalls add up); outbound, everything (the engine pulls its image and its model).
boot.py's iptables rules on the machine say the same, a second line behind this one.

Its rules are compared on every launch and rewritten (PUT, the whole firewall) when the operator's
`allow_from` or engine port changed; every firewall of that name is (two first launches at once may
each have made one, and a droplet's firewalls add up: a stale one would still admit old addresses).
A firewall may name only tags that exist: the tag is created first (a no-op for an existing tag).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from fleet.providers.base import ProviderError
from fleet.providers.cloud.api import CloudNotFound
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


def firewall_sync(api: DigitalOceanApi, *, tag: str, port: int, allow_from: tuple[str, ...]) -> None:
    """Make the firewall of the fleet tag what the configuration says (or remove it: no allow_from)."""
    wanted = firewall_body(tag=tag, port=port, allow_from=allow_from)
    ours = [f for f in api.firewalls() if f.get("name") == wanted["name"]]
    if not allow_from:
        for firewall in ours:
            with contextlib.suppress(CloudNotFound):  # removed meanwhile: as good
                api.firewall_delete(str(firewall["id"]))
        return
    if not ours:
        api.tag_create(tag)
        api.firewall_create(wanted)
    for firewall in ours:
        if _terms(firewall) != _terms(wanted):
            try:
                api.firewall_update(str(firewall["id"]), wanted)
            except CloudNotFound as exc:  # removed meanwhile: the next launch makes it again
                raise ProviderError(f"A DigitalOcean firewall changed under us: {exc.message}") from exc


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
