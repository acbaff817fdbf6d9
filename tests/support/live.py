"""A browser's websocket to the ASGI application, in this process."""

from __future__ import annotations

import json
from typing import Any

from asgiref.testing import ApplicationCommunicator

from gpucloud.asgi import application


class Socket(ApplicationCommunicator):
    """A browser's websocket to the ASGI app (channels.testing's needs daphne, which we don't run)."""

    def __init__(self, session_id: str | None, path: str = "/ws/org/", query: bytes = b"") -> None:
        headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
        if session_id is not None:
            headers.append((b"cookie", f"sessionid={session_id}".encode()))
        scope = {"type": "websocket", "path": path, "headers": headers, "query_string": query,
                 "subprotocols": [], "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}  # fmt: skip
        super().__init__(application, scope)

    async def connect(self) -> tuple[bool, int | None]:
        await self.send_input({"type": "websocket.connect"})
        answer = await self.receive_output(5)
        return answer["type"] == "websocket.accept", answer.get("code")

    async def receive_json(self) -> dict[str, Any]:
        message = await self.receive_output(5)
        assert message["type"] == "websocket.send", message
        return dict(json.loads(message["text"]))

    async def close(self) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": 1000})
        # A consumer on the Redis layer leaves once its pending read returns (up to channels_redis's
        # 5 s BRPOP); waiting less would cancel it mid-read instead.
        await self.wait(10)
