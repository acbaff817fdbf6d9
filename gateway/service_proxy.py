"""Container endpoints (reference/002's inference services) through the platform:
/services/{service_id}/{path}, with an account key of the service's org (`Authorization: Bearer
<key>`, as on /v1), spread over its ready instances.

The service's server gets the path after the prefix (`/services/svc_x/predict` arrives as `/predict`,
with `X-Forwarded-Prefix: /services/svc_x`), the query, the body, and the headers less the caller's
Authorization (the org's key never reaches the image) and the platform's cookies. No key: 401; a wrong
or revoked key: 401; another org's service, a deleted one, or one outside a scoped key's grants: 404
alike; a viewer's key: 403; no instance ready (initializing, stopped): 503. Where it goes is cached for
TARGET_CACHE_SECONDS per service and org (gateway/pod_proxy.py relays the request itself).
"""

from __future__ import annotations

import random
import re
from typing import Any

from asgiref.sync import sync_to_async

from deployments.container_access import ServiceTargets, service_targets
from deployments.pod_access import PortRefusal
from gateway.keys import caller_for
from gateway.pod_proxy import HOP_BY_HOP, refuse, relay_http
from gateway.ttl_cache import TtlCache
from gpucloud.core.errors import ApiError

PATH = re.compile(r"^/services/(?P<service>[A-Za-z0-9_]{1,40})(?P<rest>/.*)?$")
TARGET_CACHE_SECONDS = 2.0
DROPPED = HOP_BY_HOP | {b"authorization"}

_targets: TtlCache[tuple[str, str], ServiceTargets | PortRefusal] = TtlCache(TARGET_CACHE_SECONDS)


def is_service_path(path: str) -> bool:
    return path.startswith("/services/") and PATH.match(path) is not None


async def service_proxy_http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    match = PATH.match(scope["path"])
    assert match is not None
    service_id, rest = match["service"], match["rest"] or "/"
    refusal_or_targets = await _decide(scope, service_id)
    if isinstance(refusal_or_targets, PortRefusal):
        await refuse(send, refusal_or_targets)
        return
    query = scope.get("query_string", b"").decode("latin-1")
    url = random.choice(refusal_or_targets.urls) + rest + (f"?{query}" if query else "")  # noqa: S311 - spreading load
    await relay_http(
        scope, receive, send, url=url, prefix=f"/services/{service_id}", dropped=DROPPED, workload="container endpoint"
    )


async def _decide(scope: dict[str, Any], service_id: str) -> ServiceTargets | PortRefusal:
    header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return PortRefusal(401, "Send an API key of the service's organization: 'Authorization: Bearer <key>'.")
    try:
        caller = await caller_for(token.strip())
    except ApiError as exc:
        return PortRefusal(exc.status, exc.message)
    if caller.allowed is not None and service_id not in caller.allowed:
        return PortRefusal(404, f"No inference service {service_id!r}.")
    if not caller.can_invoke:
        return PortRefusal(403, "Your role in this organization may read but not call services (viewer).")
    lookup = sync_to_async(service_targets)  # in the one sync thread, as the gateway's other reads
    return await _targets.get((service_id, caller.org_id), lambda: lookup(service_id, caller.org_id))


def targets_clear() -> None:
    """Forget where services are (tests that scale one between requests)."""
    _targets.clear()
