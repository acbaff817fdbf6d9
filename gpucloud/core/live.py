"""Live updates to the pages: messages for one org's open pages go to its websocket group (senders
push after their change commits; the pages' consumers add what only the pages render). In the
distributed topology the Redis channel layer carries them from whichever process made the change (a
Celery worker, usually) to the web process holding the socket."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def org_group(org_id: str) -> str:
    return f"org.{org_id}"


# The event loop of the ASGI server in this process and its thread, when there is one (set at
# lifespan start-up).
_server_loop: tuple[asyncio.AbstractEventLoop, int] | None = None
SEND_TIMEOUT_SECONDS = 5


def server_loop_set(loop: asyncio.AbstractEventLoop | None) -> None:
    """Called from the server's loop itself."""
    global _server_loop
    _server_loop = (loop, threading.get_ident()) if loop else None


def org_push(org_id: str, message: dict[str, Any]) -> None:
    """Send `message` to the org's open pages; one that cannot be sent is logged and dropped (a
    page still shows the truth on its next load)."""
    layer = get_channel_layer()
    if layer is None:
        return

    async def send() -> None:
        await layer.group_send(org_group(org_id), message)

    try:
        server = _server_loop
        if server is not None and server[0].is_running() and server[1] != threading.get_ident():
            # In the embedded topology the worker runs in threads of the web process and the
            # in-memory layer's queues belong to the server's loop: sending from another loop
            # would not wake the socket's reader, so the send runs on the server's loop.
            asyncio.run_coroutine_threadsafe(send(), server[0]).result(timeout=SEND_TIMEOUT_SECONDS)
        else:
            async_to_sync(send)()
    except Exception:
        logger.warning("live update %s for org %s not sent", message.get("type"), org_id, exc_info=True)
