"""An engine may close a pooled keep-alive connection just as the gateway reuses it; the request
never reached the engine, so it is sent again on a new connection instead of failing."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from gateway import errors, relay
from gateway.routing import Target

TARGET = Target(instance_id="inst_x", endpoint_url="http://127.0.0.1:9", api_key="k")


class FlakySession:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    async def post(self, url: str, **kwargs: Any) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "response"


def send(session: FlakySession, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(relay, "_session", lambda: session)
    exchange = relay.Exchange(path="/v1/chat/completions", body=b"{}", content_type="application/json")
    return asyncio.run(relay._send_request(TARGET, exchange))


def test_a_stale_connection_is_retried_once_on_a_new_one(monkeypatch: pytest.MonkeyPatch) -> None:
    session = FlakySession([aiohttp.ServerDisconnectedError()])
    assert send(session, monkeypatch) == "response" and session.calls == 2


def test_twice_disconnected_blames_the_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    session = FlakySession([aiohttp.ServerDisconnectedError(), aiohttp.ServerDisconnectedError()])
    with pytest.raises(relay._Retryable) as failed:
        send(session, monkeypatch)
    assert failed.value.error.status == 502 and session.calls == 2


def test_a_refused_connection_is_not_resent(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = aiohttp.ClientConnectorError(aiohttp.client_reqrep.ConnectionKey(
        "127.0.0.1", 9, False, True, None, None, None), OSError(111, "refused"))  # fmt: skip
    session = FlakySession([refused])
    with pytest.raises(relay._Retryable):
        send(session, monkeypatch)
    assert session.calls == 1


def test_an_engine_that_went_quiet_is_a_504_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    session = FlakySession([aiohttp.SocketTimeoutError()])
    with pytest.raises(errors.GatewayError) as failed:
        send(session, monkeypatch)
    assert failed.value.status == 504 and not isinstance(failed.value, relay._Retryable) and session.calls == 1
