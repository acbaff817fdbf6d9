"""The gateway served by uvicorn exactly as in production (plain ASGI in front of Django), engine
simulators on loopback, and deployments whose replicas are those simulators."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx
import pytest
import uvicorn
from asgiref.sync import async_to_sync, sync_to_async
from django.db import connections
from django.utils import timezone

from catalog.services import catalog_load
from deployments.models import Deployment, DeploymentKind
from fleet.models import Instance, InstanceState
from gateway import counters as gateway_counters
from gateway import limits, routing, sessions
from gateway.app import gateway_shutdown
from gateway.keys import cache_clear
from gpucloud.asgi import http_app
from tests.fakes.engine_server import Engine, EngineThread
from tests.support.personas import Persona

ENGINE_KEY = "engine-secret"


@pytest.fixture(scope="module")
def gateway_server(django_db_setup: None) -> Iterator[_Served]:
    """uvicorn on a loopback port, started once per module (after the test database exists, so
    its threads connect to that one) and stopped with its lifespan shutdown at the module's end."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config("gpucloud.asgi:application", host="127.0.0.1", port=port, log_level="warning")
    served = _Served(uvicorn.Server(config), f"http://127.0.0.1:{port}")
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not served.uv.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield served
    served.uv.should_exit = True
    thread.join(10)
    _close_sync_thread_connections()


@pytest.fixture
def server(gateway_server: _Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The gateway's base URL, with this process's gateway state fresh for the test; at its end the
    gateway finishes what it serves and flushes and closes as a stopping server does, while the
    test's database is still there."""
    cache_clear()
    sessions.cache_clear()
    routing.routes_clear()
    limits._local.clear()
    gateway_counters.aggregator.drain()
    # Counters reach the store every FLUSH_SECONDS (1 s); tests wait for them, not for the interval.
    monkeypatch.setattr(gateway_counters, "FLUSH_SECONDS", 0.05)
    yield gateway_server.url
    gateway_server.settle()


class _Served:
    def __init__(self, uv: uvicorn.Server, url: str) -> None:
        self.uv, self.url = uv, url
        self.loop: asyncio.AbstractEventLoop | None = None

    def run(self) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            await self.uv.serve()

        with asyncio.Runner(loop_factory=self.uv.config.get_loop_factory()) as runner:
            runner.run(serve())

    def settle(self) -> None:
        """What stopping the server did after each test when each test had its own: wait (10 s at
        most) for the requests in progress, flush the counters, close the engine connections and
        the database connections of asgiref's sync thread."""
        deadline = time.monotonic() + 10
        while self.uv.server_state.tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.loop is not None
        asyncio.run_coroutine_threadsafe(gateway_shutdown(), self.loop).result(10)
        _close_sync_thread_connections()


def _close_sync_thread_connections() -> None:
    # The gateway's ORM calls ran in asgiref's shared sync thread: close that thread's connections
    # too, or the test database cannot be dropped at the end of the run.
    asyncio.run(sync_to_async(connections.close_all)())


def asgi_request(method: str, path: str, *, cookies: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
    """One request to the production ASGI app (gpucloud.asgi: the gateway in front of Django) in
    this thread, without a server: the gateway's database reads join the test's transaction. Its
    caches are emptied first, so the request sees the database as it is now (tests of access rules,
    not of the caches' bounds)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=cast(Any, http_app))  # a plain ASGI callable, typed loosely
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver", cookies=cookies) as client:
                return await client.request(method, path, **kwargs)
        finally:
            await gateway_shutdown()  # this event loop's engine connections and counters

    cache_clear()
    sessions.cache_clear()
    routing.routes_clear()
    return async_to_sync(send)()


@pytest.fixture
def engines() -> Iterator[Callable[[], EngineThread]]:
    """Start engine simulators on demand; all stop at the end of the test."""
    started: list[EngineThread] = []

    def start() -> EngineThread:
        engine = EngineThread(Engine(api_key=ENGINE_KEY)).__enter__()
        started.append(engine)
        return engine

    yield start
    for engine in started:
        engine.__exit__()


def serving_deployment(
    persona: Persona,
    engines: list[EngineThread],
    *,
    model: str = "smollm2-135m-instruct",
    kind: str = DeploymentKind.MODEL,
    status: str = "active",
    concurrency_limit: int | None = None,
) -> Deployment:
    """A deployment whose ready replicas are the given simulators (no provider involved)."""
    catalog_load()
    deployment = Deployment.objects.create(
        org=persona.org,
        name=model,
        kind=kind,
        status=status,
        model_id=model,
        gpu_type_id="cpu",
        region_id="local",
        desired_replicas=len(engines),
        hourly_price_micros=3_600_000,  # $3.60/h: $0.001 per second
        concurrency_limit=concurrency_limit,
        started_at=timezone.now(),
    )
    for engine in engines:
        Instance.objects.create(
            deployment=deployment,
            state=InstanceState.READY,
            provider="sim",
            provider_instance_id=f"sim-{engine.port}",
            tag="test",
            api_key=ENGINE_KEY,
            endpoint_url=engine.url,
            hourly_price_micros=3_600_000,
            launched_at=timezone.now(),
            ready_at=timezone.now(),
        )
    return deployment


def counters(deployment_id: str, *, at_least: int, timeout: float = 5.0) -> dict[str, float]:
    """The deployment's summed gateway counters once at least `at_least` requests are in."""
    deadline = time.monotonic() + timeout
    total: dict[str, float] = {}
    while time.monotonic() < deadline:
        total = {}
        for fields in gateway_counters.store().minutes(deployment_id).values():
            for name, value in fields.items():
                total[name] = total.get(name, 0) + value
        if total.get("requests", 0) >= at_least:
            return total
        time.sleep(0.1)
    raise AssertionError(f"only {total.get('requests', 0)} of {at_least} requests were counted: {total}")


def eventually(predicate: Callable[[], bool], *, timeout: float = 3.0) -> bool:
    """Whether `predicate` holds within `timeout`: the engine simulator runs on its own thread, so what it
    records after its last write (a stream's end, a cut) lands a moment after the client has read it."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
