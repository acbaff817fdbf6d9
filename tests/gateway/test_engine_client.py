"""The gateway's HTTP/1.1 client to engines (gateway/engine_client.py) against real sockets: engines
that answer in each of HTTP's ways (a length, chunks, until the connection closes), reuse and
don't reuse connections, close a pooled connection as it is reused, break mid-answer, go quiet,
refuse the connection, or speak TLS; and how the relay tells those failures apart."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway import errors, relay
from gateway.engine_client import (
    EngineDisconnected,
    EnginePool,
    EngineTimeout,
    EngineUnreachable,
)
from gateway.routing import Target

JSON = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'
# One connection's part: given the request's head and body, what it does (write, close, wait).
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]


class Engine:
    """A raw HTTP/1.1 server: each request on each connection is answered by `script(reader,
    writer, n)` (n counts requests on that connection from 0); returning False ends the connection."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script, self.tls = script, tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed_by_client = asyncio.Event()

    async def __aenter__(self) -> Engine:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))  # fmt: skip
                self.requests.append(head + await reader.readexactly(length))
                if not await self.script(reader, writer, n):
                    break
                n += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client.set()
        finally:
            writer.close()


def answer(body: bytes = JSON, *, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), extra, body
    )  # fmt: skip


async def until_the_client_closes(reader: asyncio.StreamReader) -> None:
    if not await reader.read(1):
        raise ConnectionResetError("the client closed the connection")


async def keep_answering(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
    writer.write(answer())
    await writer.drain()
    return True


def pool(**overrides: float) -> EnginePool:
    options = {"connect_timeout": 2.0, "read_timeout": 5.0, "keepalive_seconds": 4.0, **overrides}
    return EnginePool(**options)  # type: ignore[arg-type]


def target(engine: Engine, scheme: str = "http") -> Target:
    return Target(instance_id="inst_e", endpoint_url=f"{scheme}://127.0.0.1:{engine.port}", api_key="k")


async def post(client: EnginePool, where: Target, body: bytes = b'{"model":"m"}') -> bytes:
    response = await client.post(
        where.endpoint, where.head("/v1/chat/completions", "application/json"), body, len(body)
    )
    try:
        return await response.read()
    finally:
        response.release() if response.at_eof() else response.close()


def test_requests_reuse_one_keep_alive_connection_and_carry_their_head() -> None:
    async def run() -> None:
        async with Engine(keep_answering) as engine:
            client = pool()
            assert [await post(client, target(engine)) for _ in range(3)] == [JSON] * 3
            assert engine.connections == 1
            first = engine.requests[0]
            assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % engine.port)
            assert b"\r\nAuthorization: Bearer k\r\n" in first and b"\r\nContent-Length: 13\r\n\r\n" in first
            assert first.endswith(b'\r\n\r\n{"model":"m"}')
            client.close()

    asyncio.run(run())


def test_an_endpoint_url_with_a_path_keeps_it() -> None:
    where = Target(instance_id="inst_p", endpoint_url="https://pod-8000.proxy.example/engine/", api_key="k")
    head = where.head("/v1/chat/completions", "application/json")
    assert head.startswith(b"POST /engine/v1/chat/completions HTTP/1.1\r\nHost: pod-8000.proxy.example\r\n")
    assert where.endpoint.port == 443


def test_chunked_and_close_delimited_answers_are_read_whole() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        return True

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        return False

    async def run() -> None:
        client = pool()
        async with Engine(chunked) as engine:
            assert await post(client, target(engine)) == b"hello world"
            assert await post(client, target(engine)) == b"hello world" and engine.connections == 1
        async with Engine(until_close) as engine:
            assert await post(client, target(engine)) == b"all of it"
            assert await post(client, target(engine)) == b"all of it"
            assert engine.connections == 2  # an answer that ends with its connection leaves none to reuse
        client.close()

    asyncio.run(run())


def test_connection_close_in_an_answer_is_honoured() -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(answer(extra=b"Connection: close\r\n"))
        await writer.drain()
        await asyncio.sleep(0.2)  # the engine lingers: the client must not reuse the connection anyway
        return False

    async def run() -> None:
        async with Engine(once) as engine:
            client = pool()
            assert [await post(client, target(engine)) for _ in range(2)] == [JSON] * 2
            assert engine.connections == 2
            client.close()

    asyncio.run(run())


def send_through_relay(client: EnginePool, where: Target, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(relay, "_pool", lambda: client)
    exchange = relay.Exchange(path="/v1/chat/completions", body=b"{}", content_type="application/json")
    return relay._send_request(where, exchange)


def test_a_pooled_connection_the_engine_closes_as_it_is_reused_is_sent_again_on_a_new_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def closes_idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 0:
            writer.write(answer())
            return True
        return False  # the second request on a connection: closed unanswered, as an idle close racing it

    async def run() -> None:
        async with Engine(closes_idle) as engine:
            client = pool()
            assert await post(client, target(engine)) == JSON
            response = await send_through_relay(client, target(engine), monkeypatch)
            assert response.status == 200 and await response.read() == JSON
            response.release()
            assert engine.connections == 2 and len(engine.requests) == 3
            client.close()

    asyncio.run(run())


def test_a_fresh_connection_closed_unanswered_blames_the_replica(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        return False

    async def run() -> None:
        async with Engine(never_answers) as engine:
            client = pool()
            with pytest.raises(relay._Retryable) as failed:
                await send_through_relay(client, target(engine), monkeypatch)
            assert failed.value.error.status == 502 and engine.connections == 1  # not resent to the same engine
            client.close()

    asyncio.run(run())


def test_a_refused_connection_is_a_retryable_502(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        client = pool()
        nobody = Target(instance_id="inst_n", endpoint_url="http://127.0.0.1:9", api_key="k")
        with pytest.raises(EngineUnreachable):
            await post(client, nobody)
        with pytest.raises(relay._Retryable) as failed:
            await send_through_relay(client, nobody, monkeypatch)
        assert failed.value.error.status == 502
        client.close()

    asyncio.run(run())


def test_an_engine_that_goes_quiet_is_a_504_not_retried_and_its_connection_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def quiet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await until_the_client_closes(reader)  # it gives up
        return False

    async def run() -> None:
        async with Engine(quiet) as engine:
            client = pool(read_timeout=0.3)
            with pytest.raises(errors.GatewayError) as failed:
                await send_through_relay(client, target(engine), monkeypatch)
            assert failed.value.status == 504 and not isinstance(failed.value, relay._Retryable)
            await asyncio.wait_for(engine.closed_by_client.wait(), 2)
            assert engine.connections == 1 and client.open_connections == 0
            client.close()

    asyncio.run(run())


def test_a_stream_that_goes_quiet_after_it_began_times_out_between_reads() -> None:
    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):  # 0.2 s apart: each gap within the 0.5 s read timeout, together over it
            writer.write(b"8\r\ndata: x\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.2)
        await until_the_client_closes(reader)
        return False

    async def run() -> None:
        async with Engine(stalls) as engine:
            client = pool(read_timeout=0.5)
            body = b"{}"
            response = await client.post(target(engine).endpoint, target(engine).head("/v1/x", "a/b"), body, 2)
            got = []
            with pytest.raises(EngineTimeout):
                async for data in response.iter_any():
                    got.append(data)
            assert b"".join(got) == b"data: x\n" * 3
            response.close()
            client.close()

    asyncio.run(run())


def test_an_answer_broken_mid_body_fails_the_read_not_silently_short() -> None:
    async def breaks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part")
        await writer.drain()
        return False

    async def run() -> None:
        async with Engine(breaks) as engine:
            client = pool()
            with pytest.raises(EngineDisconnected) as failed:
                await post(client, target(engine))
            assert failed.value.answered and not failed.value.reused
            client.close()

    asyncio.run(run())


def test_a_request_cancelled_while_it_waits_closes_its_connection() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        await until_the_client_closes(reader)
        return False

    async def run() -> None:
        async with Engine(slow) as engine:
            client = pool()
            waiting = asyncio.ensure_future(post(client, target(engine)))
            await asyncio.sleep(0.1)
            waiting.cancel()
            await asyncio.wait_for(engine.closed_by_client.wait(), 2)  # the engine learns to stop
            assert client.open_connections == 0
            client.close()

    asyncio.run(run())


def test_a_stream_read_slower_than_it_arrives_is_held_back_not_buffered_without_bound() -> None:
    size = 4 * 1024 * 1024

    async def floods(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        writer.write(b"x" * size)
        await writer.drain()
        return True

    async def run() -> None:
        async with Engine(floods) as engine:
            client = pool()
            response = await client.post(target(engine).endpoint, target(engine).head("/v1/x", "a/b"), b"{}", 2)
            await asyncio.sleep(0.3)  # the reader does nothing meanwhile
            assert response._buffered < 2 * 1024 * 1024
            total = 0
            while data := await response.readany():
                total += len(data)
            assert total == size
            response.release()
            assert await post(client, target(engine)) != b""  # the connection went back to the pool
            assert engine.connections == 1
            client.close()

    asyncio.run(run())


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "engine.pem", directory / "engine.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def test_an_https_engine_is_verified_against_the_trusted_certificates(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))

    async def run() -> None:
        async with Engine(keep_answering, tls=server_tls) as engine:
            client = EnginePool(connect_timeout=2, read_timeout=5, keepalive_seconds=4, tls=trusting)
            assert await post(client, target(engine, "https")) == JSON
            client.close()
            stranger = pool()  # the system's CAs: this engine's certificate is nobody's
            with pytest.raises(EngineUnreachable):
                await post(stranger, target(engine, "https"))
            stranger.close()

    asyncio.run(run())
