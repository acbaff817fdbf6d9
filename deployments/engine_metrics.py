"""Queue depth read from the engines themselves (reference/000: the autoscaler "reads queue depth
from the deployment endpoint"): requests accepted by a replica's engine but waiting for a free
generation slot, from its Prometheus /metrics. vLLM publishes `vllm:num_requests_waiting`;
llama.cpp's server `llamacpp:requests_deferred`. A replica that does not answer in time counts as
unknown, not as empty."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import httpx

from deployments.models import Deployment, Instance, InstanceState

logger = logging.getLogger(__name__)

WAITING_METRICS = ("vllm:num_requests_waiting", "llamacpp:requests_deferred")
SCRAPE_TIMEOUT_SECONDS = 2.0
MAX_PARALLEL_SCRAPES = 8


def waiting_in(text: str) -> float | None:
    """The waiting-request gauges in a Prometheus text exposition, summed; None when absent."""
    total, found = 0.0, False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].strip()
        if name in WAITING_METRICS:
            try:
                total += float(value)
            except ValueError:
                continue
            found = True
    return total if found else None


def instance_waiting(instance: Instance, *, client: httpx.Client) -> float | None:
    if not instance.endpoint_url:
        return None
    try:
        response = client.get(
            f"{instance.endpoint_url.rstrip('/')}/metrics", headers={"Authorization": f"Bearer {instance.api_key}"}
        )
    except httpx.HTTPError as exc:
        logger.info("metrics of %s not read: %s", instance.pk, exc)
        return None
    return waiting_in(response.text) if response.status_code == 200 else None


def queue_depths(deployments: Iterable[Deployment]) -> dict[str, float]:
    """Requests waiting in each deployment's ready replicas (summed); a deployment none of whose
    replicas answered is left out, so the autoscaler does not read silence as an empty queue."""
    ready = list(Instance.objects.filter(deployment__in=list(deployments), state=InstanceState.READY))
    if not ready:
        return {}
    with (
        httpx.Client(timeout=SCRAPE_TIMEOUT_SECONDS, trust_env=False) as client,
        ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_SCRAPES, len(ready))) as pool,
    ):
        waiting = list(pool.map(lambda i: instance_waiting(i, client=client), ready))
    depths: dict[str, float] = {}
    for instance, value in zip(ready, waiting, strict=True):
        if value is not None:
            depths[instance.deployment_id] = depths.get(instance.deployment_id, 0.0) + value
    return depths
