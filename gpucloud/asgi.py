"""ASGI entry point: `uvicorn gpucloud.asgi:application`: the /v1 gateway, Django, and the pages'
websockets (Channels)."""

from __future__ import annotations

import asyncio
import gc
import os
import re
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gpucloud.settings")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (Django must be set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from gateway.app import gateway_app, gateway_shutdown  # noqa: E402
from gateway.pod_proxy import (  # noqa: E402
    is_pod_port_path,
    pod_proxy_http,
    pod_proxy_shutdown,
    pod_proxy_websocket,
)
from gateway.service_proxy import is_service_path, service_proxy_http  # noqa: E402
from gpucloud.core.live import server_loop_set  # noqa: E402
from gpucloud.core.memory import return_large_blocks_when_freed  # noqa: E402
from pages.consumers import DeploymentLogsConsumer, OrgEventsConsumer, UnknownPathConsumer  # noqa: E402

# reference/000's per-deployment routes: the gateway serves them whatever the auth (a bearer key,
# or a page's signed-in session), so every chat is metered, limited, woken and measured alike. The
# Django route of the same path only documents the operation (deployments/api/deployments.py).
# Any path segment as the ids: the gateway answers one that names nothing with 404, whatever it holds.
DEPLOYMENT_CHAT = re.compile(
    r"^/api/v1/(?:orgs/(?P<org>[^/]+)/)?deployments/(?P<dep>[^/]+)/(?P<op>chat/completions|embeddings)/?$"
)


async def http_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/v1 goes to the gateway (pure ASGI, no Django middleware); everything else to Django."""
    path = scope["path"]
    if path == "/v1" or path.startswith("/v1/"):
        await gateway_app(scope, receive, send)
        return
    if is_pod_port_path(path):  # a pod's HTTP port, through the platform's proxy
        await pod_proxy_http(scope, receive, send)
        return
    if is_service_path(path):  # a container endpoint (reference/002's inference service), with an API key
        await service_proxy_http(scope, receive, send)
        return
    match = DEPLOYMENT_CHAT.match(path) if scope["method"] == "POST" else None
    if match:
        pinned = {
            **scope,
            "path": f"/v1/{match['op']}",
            "gpucloud.deployment": match["dep"],
            "gpucloud.org": match["org"],
        }
        await gateway_app(pinned, receive, send)
        return
    await django_asgi_app(scope, receive, send)


async def lifespan_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Start-up freezes the loaded objects for the collector and has large freed blocks returned to
    the system; shutdown flushes the gateway's counters and closes its pools."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Everything loaded so far (Django, the apps, the settings) lives as long as the process:
            # moved out of the collector's generations, a full collection no longer walks it, which
            # removes tens-of-milliseconds pauses from the gateway's tail latency.
            gc.freeze()
            return_large_blocks_when_freed()  # memory of large request bodies goes back once they are served
            server_loop_set(asyncio.get_running_loop())  # live pushes from worker threads land on it
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            server_loop_set(None)
            await gateway_shutdown()
            await pod_proxy_shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


# Pages' live updates: the signed-in session's org, from a page of an allowed host.
websocket_app = AllowedHostsOriginValidator(
    AuthMiddlewareStack(
        URLRouter(
            [
                path("ws/org/", OrgEventsConsumer.as_asgi()),
                path("ws/deployments/<str:deployment_id>/logs/", DeploymentLogsConsumer.as_asgi()),
                re_path(r"", UnknownPathConsumer.as_asgi()),  # last: every other path is refused cleanly
            ]
        )
    )
)


async def websocket_entry(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A pod's port (JupyterLab's kernels) through the proxy; every other websocket to the pages."""
    if is_pod_port_path(scope["path"]):
        await pod_proxy_websocket(scope, receive, send)
        return
    await websocket_app(scope, receive, send)


application = ProtocolTypeRouter({"http": http_app, "websocket": websocket_entry, "lifespan": lifespan_app})
