"""The control plane's one client to engines (the gateway's hot path has its async twin in
gateway/relay.py, built from the same auth and timeouts below): health, and queue depth.

Engines answer only the platform: every call carries the instance's own secret (`auth_headers`).

Queue depth is read from the engines themselves (reference/000: the autoscaler "reads queue depth
from the deployment endpoint"): requests accepted by a replica's engine but waiting for a free
generation slot, from its Prometheus /metrics. vLLM publishes `vllm:num_requests_waiting`;
llama.cpp's server `llamacpp:requests_deferred`. A replica that does not answer in time counts as
unknown, not as empty."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import httpx
from django.db.models import Model

from fleet.models import Instance, InstanceState
from gpucloud.core.http import tls_context

logger = logging.getLogger(__name__)

WAITING_METRICS = ("vllm:num_requests_waiting", "llamacpp:requests_deferred")
HEALTH_TIMEOUT_SECONDS = 2.0
SCRAPE_TIMEOUT_SECONDS = 2.0
MAX_PARALLEL_SCRAPES = 8
# The gateway's requests: connecting is quick or the replica is unwell; a generation may take minutes.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 300.0


def auth_headers(api_key: str) -> dict[str, str]:
    """What every request to an engine carries: the instance's secret, so only the platform calls it."""
    return {"Authorization": f"Bearer {api_key}"}


def engine_healthy(endpoint_url: str) -> bool:
    """The engine answers 200 on /health (llama.cpp's server and vLLM's both serve it, unauthenticated)."""
    try:
        response = httpx.get(
            f"{endpoint_url}/health", timeout=HEALTH_TIMEOUT_SECONDS, verify=tls_context(trust_env=True)
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


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
        response = client.get(f"{instance.endpoint_url.rstrip('/')}/metrics", headers=auth_headers(instance.api_key))
    except httpx.HTTPError as exc:
        logger.info("metrics of %s not read: %s", instance.pk, exc)
        return None
    return waiting_in(response.text) if response.status_code == 200 else None


def queue_depths(deployments: Iterable[Model]) -> dict[str, float]:
    """Requests waiting in each deployment's ready replicas (summed); a deployment none of whose
    replicas answered is left out, so the autoscaler does not read silence as an empty queue."""
    ready = list(Instance.objects.filter(deployment__in=list(deployments), state=InstanceState.READY))
    if not ready:
        return {}
    with (
        httpx.Client(timeout=SCRAPE_TIMEOUT_SECONDS, trust_env=False, verify=tls_context(trust_env=False)) as client,
        ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_SCRAPES, len(ready))) as pool,
    ):
        waiting = list(pool.map(lambda i: instance_waiting(i, client=client), ready))
    depths: dict[str, float] = {}
    for instance, value in zip(ready, waiting, strict=True):
        if value is not None:
            depths[instance.deployment_id] = depths.get(instance.deployment_id, 0.0) + value
    return depths
