"""A deployment's concurrency limit: at most `concurrency_limit` requests in flight at once
through the gateway; the next one gets 429 with Retry-After.

Deployments without a limit cost nothing here. With a limit, the embedded topology counts in
this process; the distributed one counts in a Redis sorted set shared by every gateway process.
Each entry is a lease stamped with its last renewal: the process holding it renews its slots every
RENEW_SECONDS while their requests last (a stream may take many minutes), so a process that dies
holding slots frees them within SLOT_LEASE_SECONDS instead of shrinking the limit for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict

import redis.asyncio
from django.conf import settings

from gateway import errors
from gpucloud.core.per_loop import PerLoop

SLOT_LEASE_SECONDS = 60
RENEW_SECONDS = 15  # four renewals per lease: a slow Redis round or two does not lose a live slot
RETRY_AFTER_SECONDS = 1
LOCAL_SLOT = "local"  # the token of a slot counted in this process

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

_local: dict[str, int] = defaultdict(int)
_held: dict[str, str] = {}  # this process's slots in Redis: token -> deployment id
logger = logging.getLogger(__name__)


def _new_client() -> redis.asyncio.Redis:

    return redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


_clients: PerLoop[redis.asyncio.Redis] = PerLoop(_new_client)


async def _renew_forever() -> None:
    """Renew this process's held slots until it holds none (the next acquire starts it again)."""
    while _held:
        await asyncio.sleep(RENEW_SECONDS)
        client = _redis()
        if client is None:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                now = time.time()
                for token, deployment_id in list(_held.items()):
                    pipe.zadd(_key(deployment_id), {token: now}, xx=True)  # a released slot stays released
                    pipe.expire(_key(deployment_id), SLOT_LEASE_SECONDS)
                await pipe.execute()
        except Exception:  # Redis away: the next round tries again; the lease covers a few misses
            logger.warning("concurrency slots not renewed; retrying", exc_info=True)


_renewers: PerLoop[asyncio.Task[None]] = PerLoop(
    lambda: asyncio.get_running_loop().create_task(_renew_forever()), usable=lambda t: not t.done()
)


def _key(deployment_id: str) -> str:
    return f"gpucloud:gw:slots:{deployment_id}"


def _redis() -> redis.asyncio.Redis | None:

    return _clients.get() if settings.REDIS_URL else None


def _too_many(deployment_id: str, limit: int) -> errors.GatewayError:
    return errors.GatewayError(
        429,
        f"Deployment {deployment_id} is serving its limit of {limit} concurrent requests; retry shortly "
        "or raise concurrency_limit.",
        type_="rate_limit_exceeded",
        code="concurrency_limit_exceeded",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def acquire(deployment_id: str, limit: int | None) -> str | None:
    """Take a slot (returns its token, None when the deployment has no limit) or raise 429."""
    if limit is None:
        return None
    client = _redis()
    if client is None:
        if _local[deployment_id] >= limit:
            raise _too_many(deployment_id, limit)
        _local[deployment_id] += 1
        return LOCAL_SLOT
    token = uuid.uuid4().hex
    now = time.time()
    granted = await client.eval(
        _ACQUIRE, 1, _key(deployment_id), now, now - SLOT_LEASE_SECONDS, limit, token, SLOT_LEASE_SECONDS
    )
    if not granted:
        raise _too_many(deployment_id, limit)
    _held[token] = deployment_id
    with contextlib.suppress(RuntimeError):
        _renewers.get()
    return token


async def release(deployment_id: str, token: str | None) -> None:
    if token is None:
        return
    if token == LOCAL_SLOT:
        _local[deployment_id] -= 1
        return
    _held.pop(token, None)
    client = _redis()
    if client is not None:
        await client.zrem(_key(deployment_id), token)
