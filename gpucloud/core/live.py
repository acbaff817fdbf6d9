"""Live updates to the pages: messages for one org's open pages go to its websocket group (senders
push after their change commits; the pages' consumers add what only the pages render). In the
distributed topology the Redis channel layer carries them from whichever process made the change (a
Celery worker, usually) to the web process holding the socket.

Most changes happen while no page of their org is open (API clients, workers, the reconciler): a
message is built and sent only while a page listens. A page's socket marks its org as listened to
in the cache (Redis when configured, shared by every process) before it joins the group, and renews
the mark while it stays open. A sender that finds no mark builds nothing; a page that connects after
that check reads its snapshot after the change committed, so nothing is lost between the two."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache

logger = logging.getLogger(__name__)


def org_group(org_id: str) -> str:
    return f"org.{org_id}"


# The event loop of the ASGI server in this process and its thread, when there is one (set at
# lifespan start-up).
_server_loop: tuple[asyncio.AbstractEventLoop, int] | None = None
SEND_TIMEOUT_SECONDS = 5
# A page renews its org's mark every LISTEN_RENEW_SECONDS; the mark outlives a missed renewal or two
# and a page closed without a word (a killed process) by at most LISTEN_SECONDS (sends to nobody).
LISTEN_SECONDS = 90
LISTEN_RENEW_SECONDS = 30


def server_loop_set(loop: asyncio.AbstractEventLoop | None) -> None:
    """Called from the server's loop itself."""
    global _server_loop
    _server_loop = (loop, threading.get_ident()) if loop else None


def _listen_key(org_id: str) -> str:
    return f"live.listened.{org_id}"


def org_listen(org_id: str) -> None:
    """A page of the org is open: called by its socket before it joins the org's group (see the
    module's docstring for why before), then every LISTEN_RENEW_SECONDS while it stays open."""
    cache.set(_listen_key(org_id), True, timeout=LISTEN_SECONDS)


def org_listened(org_id: str) -> bool:
    """Whether a page of the org may be open; when the cache cannot tell, it may."""
    try:
        return cache.get(_listen_key(org_id)) is not None
    except Exception:
        logger.warning("live listeners of org %s unknown; sending", org_id, exc_info=True)
        return True


def org_push(org_id: str, build: Callable[[], dict[str, Any]]) -> None:
    """Send the message `build()` returns to the org's open pages, building it only while a page
    listens; one that cannot be sent is logged and dropped (a page still shows the truth on its
    next load)."""
    layer = get_channel_layer()
    if layer is None or not org_listened(org_id):
        return
    message = build()

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
