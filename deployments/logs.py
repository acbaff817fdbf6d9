"""Engine logs of a deployment's replicas: the tail the API returns, and the new lines a followed
tail has gained since the last look (what the detail page streams)."""

from __future__ import annotations

import logging

from deployments.models import Deployment
from deployments.selectors import instances_of
from fleet import drivers
from fleet.models import FINAL_STATES
from fleet.providers.base import ProviderError

logger = logging.getLogger(__name__)
TAIL_MAX = 2000


def log_tails(deployment: Deployment, *, tail: int = 200, live_only: bool = False) -> dict[str, list[str]]:
    """The last `tail` lines of each replica the provider knows (only those not ended with
    `live_only`: a follower wants new lines), by instance id. A provider that cannot answer right
    now yields an explanatory line instead of failing the whole read."""
    tail = max(1, min(tail, TAIL_MAX))
    tails: dict[str, list[str]] = {}
    instances = instances_of(deployment)
    for instance in instances.exclude(state__in=FINAL_STATES) if live_only else instances:
        if not (instance.provider and instance.provider_instance_id):
            continue
        try:
            tails[instance.pk] = drivers.driver(instance.provider).logs(instance.provider_instance_id, tail=tail)
        except ProviderError as exc:
            tails[instance.pk] = ["[gpucloud] the provider cannot return this replica's logs right now."]
            logger.warning("logs of %s unavailable: %s", instance.pk, exc)
    return tails


def new_lines(previous: list[str], current: list[str]) -> list[str]:
    """The lines of `current` that follow what `previous` ended with: two tails of the same growing
    log overlap where the older one's end meets the newer one's start."""
    for overlap in range(min(len(previous), len(current)), 0, -1):
        if previous[-overlap:] == current[:overlap]:
            return current[overlap:]
    return current
