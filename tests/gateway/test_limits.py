"""The concurrency limit's slots in Redis are leases (gateway/limits.py): a live request keeps its
slot however long it streams, and a process that died holding slots frees them within one lease
(it was 900 s: a crashed gateway worker made its deployments answer 429 for a quarter of an hour)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from django.conf import settings

from gateway import errors, limits

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="slots are leases only in Redis (distributed topology)")
LEASE = 1  # seconds: Redis expires keys in whole seconds


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "SLOT_LEASE_SECONDS", LEASE)
    monkeypatch.setattr(limits, "RENEW_SECONDS", LEASE / 5, raising=False)


def deployment() -> str:
    return f"dep_{uuid.uuid4().hex[:16]}"


async def refused(deployment_id: str) -> bool:
    try:
        token = await limits.acquire(deployment_id, 1)
    except errors.GatewayError as exc:
        assert exc.status == 429
        return True
    await limits.release(deployment_id, token)
    return False


def test_a_request_longer_than_the_lease_keeps_its_slot() -> None:
    async def scene() -> None:
        dep = deployment()
        token = await limits.acquire(dep, 1)
        await asyncio.sleep(LEASE * 2.5)  # a long stream
        assert await refused(dep)  # still its slot: the limit of 1 holds
        await limits.release(dep, token)
        assert not await refused(dep)

    asyncio.run(scene())


def test_the_slots_of_a_process_that_died_free_within_a_lease() -> None:
    async def scene() -> None:
        dep = deployment()
        client = limits._new_client()
        try:  # another process took the only slot, then died: nobody renews it
            await client.zadd(f"gpucloud:gw:slots:{dep}", {"dead-process-slot": time.time()})
        finally:
            await client.aclose()
        assert await refused(dep)
        await asyncio.sleep(LEASE * 1.5)
        assert not await refused(dep)

    asyncio.run(scene())
