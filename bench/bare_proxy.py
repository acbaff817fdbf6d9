"""The floor for a Python HTTP hop: an ASGI app that relays every request to one engine with aiohttp
and streams the answer back as it arrives, and does nothing else (no auth, routing, metering or
schema repair). bench/gateway_bench.py runs it under the same uvicorn as the gateway, so the difference
between the two is what the gateway's own work costs and the rest is the hop itself.

    BARE_PROXY_UPSTREAM=http://127.0.0.1:9100 uvicorn bench.bare_proxy:app --loop uvloop --http httptools
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("BARE_PROXY_UPSTREAM", "http://127.0.0.1:9100")
_session: aiohttp.ClientSession | None = None


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global _session
    if scope["type"] != "http":
        return
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4))
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in (b"authorization", b"content-type")}
    url = f"{UPSTREAM}{scope['path']}"
    async with _session.request(scope["method"], url, data=body, headers=headers) as upstream:
        start = {"type": "http.response.start", "status": upstream.status,
                 "headers": [(b"content-type", upstream.headers.get("Content-Type", "").encode())]}  # fmt: skip
        await send(start)
        async for data in upstream.content.iter_any():
            await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
