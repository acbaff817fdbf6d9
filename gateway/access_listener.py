"""Every gateway process's subscription to access changes (gpucloud/core/access_changes.py): a
revoked or regenerated key, a changed grant, a member removed or given another role reaches this
process's key and session caches within a second of its commit, whichever process made it.

One task per event loop (started by the first request that authenticates) subscribes to the
changes' Redis channel and hands each change to the listeners. It reconnects with backoff when
Redis goes away; while it is away the caches' time to live (KEY_CACHE_SECONDS) is the bound, and on
every (re)subscription the caches forget everything they hold, since a change may have been
published while this process was not listening. A silent connection is found by a ping every
PING_SECONDS. Without Redis (the embedded topology: one process) changes reach the caches
directly and nothing runs here.
"""

from __future__ import annotations

import asyncio
import logging
import os

import redis.asyncio
from django.conf import settings

from gpucloud.core import access_changes
from gpucloud.core.access_changes import AccessChange
from gpucloud.core.per_loop import PerLoop

logger = logging.getLogger(__name__)
PING_SECONDS = 5.0
CLIENT_NAME = "gpucloud-access-listener"  # with the pid, as Redis's CLIENT LIST shows the subscription
BACKOFF_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)  # between reconnection attempts; the last repeats
STOP_SECONDS = 3.0


async def _listen_forever() -> None:
    failures = 0
    while not _stop_asked():
        try:
            await _listen_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("access changes: subscription lost (%s); caches fall back to their TTL", exc)
        await asyncio.sleep(BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS) - 1)])
        failures += 1


async def _listen_once() -> None:
    client = redis.asyncio.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=2,
        socket_timeout=2 * PING_SECONDS,
        client_name=f"{CLIENT_NAME}-{os.getpid()}",
    )
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(access_changes.channel())
        access_changes.notify(AccessChange(everything=True))  # what was missed before now
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        while not _stop_asked():
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is not None:
                heard = now
                if message["type"] == "message":
                    change = AccessChange.decode(message["data"])
                    if change is not None:
                        access_changes.notify(change)
            elif pinged > heard and now - pinged > PING_SECONDS:
                raise ConnectionError(f"no answer to a ping in {PING_SECONDS:.0f} s")
            elif now - max(heard, pinged) > PING_SECONDS:
                await pubsub.ping()
                pinged = now
    finally:
        await pubsub.aclose()
        await client.aclose()


def _stop_asked() -> bool:
    """Whether this loop's subscriber was cancelled. Checked by hand because a cancel that lands as
    redis-py's read timeout fires can be taken for that timeout (get_message then answers None): the
    task would go on listening while marked as cancelling, and asyncio.run, which waits for its
    cancelled tasks at the loop's end, would wait forever."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


_tasks: PerLoop[asyncio.Task[None]] = PerLoop(
    lambda: asyncio.get_running_loop().create_task(_listen_forever()), usable=lambda task: not task.done()
)


async def stop() -> None:
    """End this event loop's subscriber, if one runs, before the loop ends: cancelled, and awaited
    (at most STOP_SECONDS) so its connection is closed."""
    task = _tasks.current()
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_SECONDS)


def ensure_listening() -> None:
    """Start this event loop's subscriber unless it runs (cheap: called by every authentication)."""
    if settings.REDIS_URL:
        _tasks.get()
