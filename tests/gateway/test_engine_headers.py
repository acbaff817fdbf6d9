"""What the gateway's requests to an engine carry: the instance's secret, no invitation to compress
(the answer is relayed as the engine encodes it, so a compressed one would reach the client as
bytes it never asked for), and no cookie an engine set on an earlier answer."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

from aiohttp import web

from gateway import relay
from gateway.routing import Target


async def _exchange_twice() -> tuple[list[dict[str, str]], list[bytes]]:
    seen: list[dict[str, str]] = []

    async def chat(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        answer = web.json_response({"id": "chatcmpl-1", "object": "chat.completion", "choices": []})
        answer.set_cookie("engine_session", "abc")
        if "gzip" in request.headers.get("Accept-Encoding", ""):  # as an engine behind a compressing proxy
            answer.body = gzip.compress(answer.body)  # type: ignore[arg-type]
            answer.headers["Content-Encoding"] = "gzip"
        return answer

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    # By name: a client's cookie jar keeps no cookies of a bare IP address anyway.
    target = Target(instance_id="inst_h", endpoint_url=f"http://localhost:{port}", api_key="engine-key")
    bodies: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])

    try:
        for _ in range(2):
            exchange = relay.Exchange(
                path="/v1/chat/completions", body=b'{"model":"m"}', content_type="application/json"
            )
            upstream = await relay._send_request(target, exchange)
            await relay._relay(upstream, exchange, send)
            upstream.release()
    finally:
        await relay.close_sessions()
        await runner.cleanup()
    return seen, bodies


def test_engine_requests_carry_the_secret_ask_for_no_encoding_and_keep_no_cookies() -> None:
    seen, bodies = asyncio.run(_exchange_twice())
    assert [h["Authorization"] for h in seen] == ["Bearer engine-key"] * 2
    assert [h.get("Accept-Encoding") for h in seen] == ["identity"] * 2
    assert [h.get("Content-Type") for h in seen] == ["application/json"] * 2
    assert all("Cookie" not in h for h in seen)  # the first answer's cookie is not sent back
    assert all(body.startswith(b'{"id":"chatcmpl-1"') for body in bodies)  # plain JSON, not gzip
