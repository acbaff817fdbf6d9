"""What every test cloud shares: an HTTP server on loopback that checks each request a driver sends,
and each answer it gives, against the cloud's own published OpenAPI description (the part the
driver uses, extracted from ../shared/reference/providers/ into specs/ by extract_specs.py), keeps
state (machines come and go on their own clock), and plays the cloud's failures on demand.

A subclass implements the routes of its cloud that the driver uses (`routes`) with the cloud's
shapes, and its error shapes (`error_body`). Tests read:
- `calls`: every request (method, path, status answered), and `schema_errors`: every request or answer
  that broke the description (the `cloud` fixtures assert none at the end);
- `machines`: what runs, each a `Machine` whose engine is the engine simulator (or nothing yet);
- `fail(...)`: the next matching request(s) answer a fault instead (a status and body, a delay
  longer than the driver's timeout, or a 429 with or without Retry-After).

Machines are engine simulators on loopback (tests/fakes/engine_box.py), started with the secret the
driver passed in the container's environment, so a wrong or missing secret fails the test the way
it fails in production: the gateway's requests are refused. VM clouds (Lambda, DigitalOcean) publish
an engine on a fixed port of each machine's own address: each machine gets its own loopback address
(127.0.0.2, 127.0.0.3, ...) and the engine listens there on `engine_port`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

from aiohttp import web
from openapi_core import Config, OpenAPI
from openapi_core.exceptions import OpenAPIError
from openapi_core.testing import MockRequest, MockResponse

from tests.fakes.engine_box import AppThread, Box
from tests.fakes.engine_server import Engine

SPECS = Path(__file__).resolve().parent / "specs"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@cache
def openapi(cloud: str) -> OpenAPI:
    """The cloud's description (specs/<cloud>.json), parsed and checked once per process. RFC 9457
    problem documents (application/problem+json, RunPod's errors) are JSON: openapi-core reads only
    application/json as JSON unless told, and would check the raw bytes against the schema."""
    config = Config(extra_media_type_deserializers={"application/problem+json": json.loads})
    return OpenAPI.from_dict(json.loads((SPECS / f"{cloud}.json").read_text()), config=config)


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class Fault:
    """Answer matching requests with `status` and `body` (JSON unless `text`) instead, or first
    sleep `delay` seconds (past the driver's timeout: it gives up)."""

    method: str
    path: re.Pattern[str]
    status: int = 500
    body: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1


@dataclass
class Machine:
    """One machine the cloud runs for us: what the driver asked for (`request`, the cloud's own
    create body), its state in the cloud's words, and its engine once booted."""

    id: str
    request: dict[str, Any]
    state: str
    created_at: float = field(default_factory=time.time)
    address: str = "127.0.0.1"
    engine: Box | None = None
    ended_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class FakeCloud:
    """Subclasses set `spec` (the cloud's name in specs/), `server_url` (the description's server,
    which request paths are matched under) and `api_key`, and implement `routes` and `error_body`."""

    spec: ClassVar[str] = ""
    server_url: ClassVar[str] = ""
    api_key: ClassVar[str] = "test-cloud-key"
    # The media type of the cloud's error bodies (RunPod's are RFC 9457 problems: application/problem+json).
    error_content_type: ClassVar[str] = "application/json"

    def __init__(self, *, boot_seconds: float = 0.0, terminate_seconds: float = 0.0, engine_delay: float = 0.0) -> None:
        self.openapi = openapi(self.spec)
        self.boot_seconds = boot_seconds  # how long a machine takes to report running
        self.terminate_seconds = terminate_seconds  # how long an accepted termination takes
        self.engine_delay = engine_delay  # how long after "running" the engine starts answering
        self.calls: list[Call] = []
        self.schema_errors: list[str] = []
        self.machines: dict[str, Machine] = {}
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self.engine_port = _free_port()
        self._addresses = itertools.count(2)
        self._server: AppThread | None = None

    # --- to implement -------------------------------------------------------------------------
    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error_body(self, status: int, message: str) -> Any:
        """The cloud's error shape for `status`."""
        return {"error": message}

    # --- server -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the test cloud first"
        return self._server.url

    def start(self, *, port: int = 0) -> FakeCloud:
        """Serve on loopback, on `port` (0: any free one)."""
        app = web.Application(middlewares=[self._checked])
        self.routes(app)
        self._server = AppThread(app, port=port)
        return self

    def stop(self) -> None:
        with self.lock:
            machines = list(self.machines.values())
        for machine in machines:
            self.power_off(machine)
        if self._server is not None:
            self._server.power_off()

    # --- faults -------------------------------------------------------------------------------
    def fail(self, method: str, path: str, **fault: Any) -> None:
        """The next `times` requests `method path` (a regex on the path) answer the fault."""
        with self.lock:
            self.faults.append(Fault(method=method.upper(), path=re.compile(path), **fault))

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.method == method and fault.path.fullmatch(path):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    # --- the check around every request ---------------------------------------------------------
    @web.middleware
    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read()
        body = _json_or_none(raw)
        call = Call(request.method, request.path, dict(request.query), body)
        with self.lock:
            self.calls.append(call)
        mock = MockRequest(
            self.server_url, request.method.lower(), request.path, args=dict(request.query),
            headers=dict(request.headers), data=raw or None,
            content_type=request.headers.get("Content-Type", "application/json").split(";")[0],
        )  # fmt: skip
        try:
            self.openapi.validate_request(mock)
        except OpenAPIError as exc:  # any failure to match the description is what we record
            self._schema_error(f"request {request.method} {request.path}: {_reason(exc)}")
            return self._answer(call, 400, self.error_body(400, f"request breaks the description: {_reason(exc)}"))
        if request.headers.get("Authorization") != f"Bearer {self.api_key}" and not self.authorized(request):
            return self._answer(call, 401, self.error_body(401, "invalid api key"))
        fault = self._fault_for(request.method, request.path)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.text is not None:
                call.status = fault.status
                return web.Response(status=fault.status, text=fault.text, headers=fault.headers)
            return self._answer(call, fault.status, fault.body, fault.headers, check=True, mock=mock)
        response = await handler(request)
        call.status = response.status
        if isinstance(response, web.Response) and response.body is not None:
            data = response.body if isinstance(response.body, bytes) else str(response.body).encode()
            self._check_answer(mock, response.status, data, response.content_type, dict(response.headers))
        return response

    def authorized(self, request: web.Request) -> bool:
        """Clouds that take the key elsewhere than `Authorization: Bearer` say so here."""
        return False

    def _answer(
        self, call: Call, status: int, body: Any, headers: dict[str, str] | None = None, *,
        check: bool = False, mock: MockRequest | None = None,
    ) -> web.Response:  # fmt: skip
        call.status = status
        data = json.dumps(body).encode()
        content_type = self.error_content_type if status >= 400 else "application/json"
        if check and mock is not None:
            self._check_answer(mock, status, data, content_type, headers or {})
        return web.Response(status=status, body=data, content_type=content_type, headers=headers)

    def _check_answer(self, mock: MockRequest, status: int, data: bytes, content_type: str, headers: dict) -> None:
        """Our own answers must follow the description too, where it describes that status."""
        try:
            self.openapi.validate_response(mock, MockResponse(data, status, headers, content_type))
        except OpenAPIError as exc:
            reason = _reason(exc)
            if "Unknown response" in reason or "ResponseNotFound" in type(exc).__name__:
                return  # a status the description does not list (a 429 or 5xx played on purpose)
            self._schema_error(f"answer {status} to {mock.method.upper()} {mock.path}: {reason}")

    def _schema_error(self, message: str) -> None:
        with self.lock:
            self.schema_errors.append(message)

    # --- machines -----------------------------------------------------------------------------
    def json_response(self, body: Any, status: int = 200) -> web.Response:
        return web.json_response(body, status=status)

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response(self.error_body(status, message), status=status, content_type=self.error_content_type)

    def new_address(self) -> str:
        """A loopback address of its own for a VM (127.0.0.2, 127.0.0.3, ...)."""
        n = next(self._addresses)
        return f"127.0.{n // 250}.{n % 250 + 2}" if n >= 250 else f"127.0.0.{n}"

    def boot(self, machine: Machine, api_key: str, *, port: int = 0) -> None:
        """Start the machine's engine (an engine simulator answering only `api_key`), after
        `engine_delay` seconds (a machine that reports running before its engine answers)."""

        def start() -> None:
            if self.engine_delay:
                time.sleep(self.engine_delay)
            with self.lock:
                if machine.ended_at is not None:
                    return
            box = Box(Engine(api_key=api_key), host=machine.address, port=port)
            with self.lock:
                if machine.ended_at is None:
                    machine.engine = box
                    return
            box.power_off()

        threading.Thread(target=start, daemon=True).start()

    def power_off(self, machine: Machine) -> None:
        with self.lock:
            machine.ended_at = machine.ended_at or time.time()
            engine, machine.engine = machine.engine, None
        if engine is not None:
            engine.power_off()

    def vanish(self, machine_id: str) -> None:
        """The cloud takes the machine away (a spot preemption, a host failure): gone from every list."""
        with self.lock:
            machine = self.machines.pop(machine_id)
        self.power_off(machine)

    def running(self) -> list[Machine]:
        with self.lock:
            return [m for m in self.machines.values() if m.ended_at is None]

    def requests_to(self, method: str, pattern: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _reason(exc: BaseException) -> str:
    """The validator's own explanation, with the schema errors underneath it."""
    parts = [f"{type(exc).__name__}: {exc}"]
    cause = exc.__cause__
    while cause is not None:
        details = getattr(cause, "schema_errors", None)
        parts.append(str(cause) if not details else "; ".join(str(getattr(e, "message", e)) for e in details))
        cause = cause.__cause__
    return " <- ".join(parts)[:2000]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
