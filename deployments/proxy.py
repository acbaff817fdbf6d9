"""Forward an OpenAI-compatible request to one ready instance of a deployment (the gateway issue
builds the full /v1 gateway; this is the per-deployment route of reference/000)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import httpx
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse

from deployments.models import Deployment
from fleet.models import InstanceState
from gpucloud.core.errors import ApiError

TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=5.0)


class NotReady(ApiError):
    status = 503
    type = "deployment_not_ready"


def chat_completions(deployment: Deployment, body: bytes) -> HttpResponseBase:
    instances = list(deployment.instances.filter(state=InstanceState.READY).exclude(endpoint_url=""))
    if not instances:
        raise NotReady(f"Deployment {deployment.pk} has no ready instance (status {deployment.status}).")
    instance = random.choice(instances)  # noqa: S311 - load spreading, not security
    url = f"{instance.endpoint_url}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {instance.api_key}", "Content-Type": "application/json"}
    client = httpx.Client(timeout=TIMEOUT)
    request = client.build_request("POST", url, content=body, headers=headers)
    try:
        upstream = client.send(request, stream=True)
    except httpx.HTTPError as exc:
        client.close()
        raise NotReady(f"The instance did not answer: {type(exc).__name__}.") from None
    content_type = upstream.headers.get("content-type", "application/json")
    if content_type.startswith("text/event-stream"):
        return StreamingHttpResponse(_relay(upstream, client), status=upstream.status_code, content_type=content_type)
    try:
        payload = upstream.read()
    finally:
        upstream.close()
        client.close()
    return HttpResponse(payload, status=upstream.status_code, content_type=content_type)


def _relay(upstream: httpx.Response, client: httpx.Client) -> Iterator[bytes]:
    try:
        yield from upstream.iter_raw()
    finally:
        upstream.close()
        client.close()
