"""A gateway process's subscription to access changes survives Redis going away: through a proxy
the test cuts (connection closed) and freezes (connection open, nothing answered), the subscriber
reconnects, forgets everything it may have missed, and hears the next change. Skipped without
REDIS_URL (CI sets it)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
import redis.asyncio.client
from django.conf import settings as django_settings

from gateway import access_listener
from gateway.app import gateway_shutdown
from gpucloud.core import access_changes
from gpucloud.core.access_changes import AccessChange

pytestmark = pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL")
WAIT_SECONDS = 15  # generous, for a loaded CI machine


class Proxy:
    """A TCP relay to Redis whose connections the test can close or freeze."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.frozen: set[asyncio.StreamWriter] = set()
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, upstream_writer]
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if writer not in self.frozen:  # a frozen connection swallows everything
                    writer.write(data)
                    await writer.drain()
        writer.close()

    def freeze(self) -> None:
        """The connections open now stay open and answer nothing (a dead peer); new ones work."""
        self.frozen.update(self.writers)

    def cut(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def stop(self) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"not within {WAIT_SECONDS} s: {what}"
        await asyncio.sleep(0.02)


def test_the_subscriber_reconnects_after_a_cut_and_a_silent_connection(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    heard: list[AccessChange] = []
    monkeypatch.setattr(access_changes, "_listeners", [heard.append])  # this test's ear only
    monkeypatch.setattr(access_listener, "PING_SECONDS", 1.0)  # a silent connection is found sooner
    real = redis.Redis.from_url(django_settings.REDIS_URL, socket_timeout=5)
    channel = access_changes.channel()
    kwargs = real.connection_pool.connection_kwargs

    def subscribed() -> bool:
        return AccessChange(everything=True) in heard

    async def published(change: AccessChange) -> None:
        """Publish until heard: a message sent before the subscription is acknowledged may be missed."""
        for _ in range(WAIT_SECONDS * 10):
            await asyncio.to_thread(real.publish, channel, change.encode())
            await asyncio.sleep(0.1)
            if change in heard:
                return
        raise AssertionError(f"{change} not heard")

    async def scenario() -> None:
        proxy = Proxy(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))
        port = await proxy.start()
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/{kwargs.get('db', 0)}"
        task = asyncio.get_running_loop().create_task(access_listener._listen_forever())
        try:
            await until(subscribed, "first subscription")
            await published(AccessChange(key_id="key_1"))
            heard.clear()
            await asyncio.sleep(3.5)  # quiet: pings answered keep the subscription (no new one)
            assert not subscribed()

            heard.clear()
            proxy.cut()  # Redis restarted, or the network dropped the connection
            await until(subscribed, "subscribed again after a cut")
            await published(AccessChange(key_id="key_2"))

            heard.clear()
            proxy.freeze()
            await until(subscribed, "subscribed again after a silent connection")
            await published(AccessChange(user_id=7, org_id="org_1"))
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await proxy.stop()

    asyncio.run(scenario())
    real.close()


def in_thread_within(seconds: float, coroutine: Callable[[], Any]) -> bool:
    """Run asyncio.run(coroutine()) in a thread; whether it returned within `seconds` (a loop whose
    end waits forever for a task is left behind in its daemon thread)."""
    thread = threading.Thread(target=lambda: asyncio.run(coroutine()), daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive()


def test_a_cancel_taken_for_the_read_timeout_still_ends_the_subscriber(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CI hang of stop 26: a cancel that lands as redis-py's read timeout fires can be answered
    as that timeout (get_message returns None). Played here by a get_message that always does so: the
    subscriber must still end, or asyncio.run's end (which cancels and awaits every task) never returns."""
    read = redis.asyncio.client.PubSub.get_message

    async def swallowing(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await read(self, *args, **kwargs)
        except asyncio.CancelledError:
            return None

    monkeypatch.setattr(redis.asyncio.client.PubSub, "get_message", swallowing)
    heard: list[AccessChange] = []
    monkeypatch.setattr(access_changes, "_listeners", [heard.append])

    async def listening_then_done() -> None:
        access_listener.ensure_listening()
        await until(lambda: bool(heard), "subscribed")  # it says 'forget everything' once subscribed

    assert in_thread_within(WAIT_SECONDS, listening_then_done), "the loop's end waited for the subscriber"


def test_the_gateways_shutdown_ends_the_subscriber() -> None:
    async def listening_then_shutdown() -> asyncio.Task[None]:
        access_listener.ensure_listening()
        task = access_listener._tasks.current()
        assert task is not None
        await asyncio.sleep(0.2)
        await gateway_shutdown()
        assert task.done(), "ended (and its connection closed) before the loop's end"
        return task

    assert in_thread_within(WAIT_SECONDS, listening_then_shutdown)
