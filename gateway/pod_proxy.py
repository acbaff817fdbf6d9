"""The platform's own proxy to a pod's HTTP ports: /pods/{pod_id}/ports/{port}/{path}, HTTP and
websockets (JupyterLab's kernels), so a web app in a pod opens from the pod page on any provider.

Who passes (deployments/pod_access.py): a signed-in member of the pod's org (member role or above:
a pod's ports are a shell on it), or whoever holds the pod's proxy token: `?gpucloud_token=` once
(it becomes a cookie confined to the pod's path and a redirect drops it from the URL) or the
`X-Gpucloud-Pod-Token` header. No credentials: 401; another org's pod or no pod: 404 alike; a pod
that is not running: 503. Decisions are cached for AUTH_CACHE_SECONDS per pod, port and credential.

What passes on: the method, the whole path (the prefix stays: an app serves under it, as JupyterLab
with `--ServerApp.base_url=$GPUCLOUD_PROXY_PATH8888/` does), the query, the headers and the body as it
arrives; minus hop-by-hop headers and the platform's own cookies (its session, its CSRF cookie, the
pod token), plus X-Forwarded-For/-Proto/-Host/-Prefix. The answer streams back as the pod sends it; cookies it sets
are confined to the pod's path, and none may take a platform cookie's name.

The proxy serves pods' pages from the platform's own origin; README ("Pods: ports and SSH") says what
that lets a pod's page do, and the platform's session and CSRF cookies are out of its scripts' reach.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http.cookie import parse_cookie
from websockets.asyncio.client import ClientConnection

from deployments.pod_access import PortRefusal, PortTarget, pod_port_target
from deployments.pod_activity import pod_activity_mark
from gateway.ttl_cache import TtlCache

PATH = re.compile(r"^/pods/(?P<pod>[A-Za-z0-9_]{1,40})/ports/(?P<port>[0-9]{1,5})(?P<rest>/.*)?$")
TOKEN_PARAM = "gpucloud_token"  # noqa: S105 - the name of the query parameter, not a secret
TOKEN_HEADER = b"x-gpucloud-pod-token"
TOKEN_COOKIE = "gpucloud_pod_token"  # noqa: S105 - the cookie's name
AUTH_CACHE_SECONDS = 2.0
TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=60.0, pool=10.0)  # long polls and slow cells pass
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)  # fmt: skip  (a body's length passes: the body passes unchanged, as it arrives or as the pod sends it)
_WS_DROPPED = HOP_BY_HOP | {b"content-length", b"sec-websocket-key", b"sec-websocket-version",
                            b"sec-websocket-extensions",
                            b"sec-websocket-protocol"}  # fmt: skip

_decisions: TtlCache[tuple[str, int, str, str], PortTarget | PortRefusal] = TtlCache(AUTH_CACHE_SECONDS)
_client: httpx.AsyncClient | None = None


def is_pod_port_path(path: str) -> bool:
    return path.startswith("/pods/") and PATH.match(path) is not None


async def pod_proxy_http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    match = PATH.match(scope["path"])
    assert match is not None
    pod_id, port, rest = match["pod"], int(match["port"]), match["rest"]
    prefix = f"/pods/{pod_id}/ports/{port}"
    query = scope.get("query_string", b"").decode("latin-1")
    if rest is None:  # an app under a prefix links relative to it: /ports/8888 -> /ports/8888/
        await _redirect(send, f"{prefix}/" + (f"?{query}" if query else ""))
        return
    params = parse_qsl(query, keep_blank_values=True)
    handed = next((value for name, value in params if name == TOKEN_PARAM), "")
    decision = await _decide(scope, pod_id, port, token=handed)
    if isinstance(decision, PortRefusal):
        await refuse(send, decision)
        return
    if handed:  # keep it as a cookie of this pod's path and take it out of the address bar
        cleaned = urlencode([(n, v) for n, v in params if n != TOKEN_PARAM])
        cookie = f"{TOKEN_COOKIE}={handed}; Path={prefix}/; HttpOnly; SameSite=Lax" + _secure(scope)
        await _redirect(send, scope["path"] + (f"?{cleaned}" if cleaned else ""), cookies=[cookie])
        return
    await pod_activity_mark(pod_id)  # a pod in use through its ports is not idle
    await relay_http(scope, receive, send, url=decision.url + scope["path"] + (f"?{query}" if query else ""),
                     prefix=prefix)  # fmt: skip


async def pod_proxy_websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    match = PATH.match(scope["path"])
    if match is None or match["rest"] is None:
        await send({"type": "websocket.close", "code": 4404})
        return
    pod_id, port = match["pod"], int(match["port"])
    origin = _header(scope, b"origin")
    if origin and urlsplit(origin).netloc != _header(scope, b"host"):  # another site's page, riding the cookies
        await send({"type": "websocket.close", "code": 4403})
        return
    query = scope.get("query_string", b"").decode("latin-1")
    handed = next((v for n, v in parse_qsl(query, keep_blank_values=True) if n == TOKEN_PARAM), "")
    decision = await _decide(scope, pod_id, port, token=handed)
    if isinstance(decision, PortRefusal):
        await send({"type": "websocket.close", "code": 4000 + decision.status})
        return
    upstream_url = "ws" + decision.url.removeprefix("http") + scope["path"] + (f"?{query}" if query else "")
    headers = _forwarded_headers(scope, f"/pods/{pod_id}/ports/{port}", dropped=_WS_DROPPED)
    try:
        upstream = await websockets.connect(
            upstream_url, additional_headers=headers, subprotocols=scope.get("subprotocols") or None,
            open_timeout=10, max_size=None, compression=None,
        )  # fmt: skip
    except (OSError, websockets.InvalidHandshake, TimeoutError):
        await send({"type": "websocket.close", "code": 4502})
        return
    await pod_activity_mark(pod_id)
    async with upstream:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _pump(receive, send, upstream)


# --- deciding --------------------------------------------------------------------------------------


async def _decide(scope: dict[str, Any], pod_id: str, port: int, *, token: str) -> PortTarget | PortRefusal:
    cookies = _cookies(scope)
    session_key = cookies.get(settings.SESSION_COOKIE_NAME, "")
    token = token or _header(scope, TOKEN_HEADER) or cookies.get(TOKEN_COOKIE, "")
    lookup = sync_to_async(pod_port_target)  # in the one sync thread, as the gateway's other reads
    return await _decisions.get(
        (pod_id, port, session_key, token), lambda: lookup(pod_id, port, session_key=session_key, token=token)
    )


# --- relaying --------------------------------------------------------------------------------------


async def relay_http(
    scope: dict[str, Any],
    receive: Any,
    send: Any,
    *,
    url: str,
    prefix: str,
    dropped: frozenset[bytes] = HOP_BY_HOP,
    workload: str = "pod",
) -> None:
    """The request to `url` (an address at the workload's provider), the answer streamed back; the
    headers less `dropped` and the platform's cookies, its cookies confined to `prefix`. A refusal
    names the `workload` ("pod", "container endpoint") that did not answer."""
    client = _http_client()
    headers = _forwarded_headers(scope, prefix, dropped=dropped)
    # A request without a body can be sent again: once, when the pod's server dropped the connection
    # before answering (a kept-alive connection it had closed, a full accept queue).
    bodiless = scope["method"] in ("GET", "HEAD", "OPTIONS") and not _header(scope, b"content-length").strip("0")
    for attempt in range(2 if bodiless else 1):
        request = client.build_request(
            scope["method"], url, headers=headers, content=None if bodiless else _body(receive)
        )
        try:
            response = await client.send(request, stream=True)
            break
        except (httpx.RemoteProtocolError, httpx.ConnectError) as exc:
            if attempt == 0 and bodiless:
                continue
            refusal = PortRefusal(502, f"The {workload} did not answer on its port: {type(exc).__name__}.")
            if bodiless and "text/html" in _header(scope, b"accept"):  # a browser opening it: the app may be starting
                await _starting_page(send, refusal)
            else:
                await refuse(send, refusal)
            return
        except httpx.HTTPError as exc:
            await refuse(send, PortRefusal(502, f"The {workload} did not answer on its port: {type(exc).__name__}."))
            return
    try:
        answer_headers = [
            (name, value) for name, value in response.headers.raw if name.lower() not in HOP_BY_HOP
            and name.lower() != b"set-cookie"
        ]  # fmt: skip
        answer_headers += [
            (b"set-cookie", c.encode("latin-1")) for c in _confined(response.headers.get_list("set-cookie"), prefix)
        ]
        await send({"type": "http.response.start", "status": response.status_code, "headers": answer_headers})
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except httpx.HTTPError:
        await send({"type": "http.response.body", "body": b""})  # the pod went mid-answer: end it
    finally:
        await response.aclose()


async def _body(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if message.get("body"):
            yield message["body"]
        if not message.get("more_body"):
            return


async def _pump(receive: Any, send: Any, upstream: ClientConnection) -> None:
    """Both directions until either side closes; the other is then closed too."""

    async def client_to_pod() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes") if message.get("bytes") is not None else message.get("text")
            if data is not None:
                await upstream.send(data)

    async def pod_to_client() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for data in upstream:
                key = "bytes" if isinstance(data, bytes) else "text"
                await send({"type": "websocket.send", key: data})

    tasks = [asyncio.create_task(client_to_pod()), asyncio.create_task(pod_to_client())]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    with contextlib.suppress(Exception):
        await send({"type": "websocket.close", "code": 1000})


def _forwarded_headers(scope: dict[str, Any], prefix: str, *, dropped: frozenset[bytes]) -> list[tuple[str, str]]:
    headers = []
    for name, value in scope.get("headers") or []:
        if name in dropped or name == TOKEN_HEADER:
            continue
        if name == b"cookie":
            kept = _pod_cookies(value.decode("latin-1"))
            if kept:
                headers.append(("cookie", kept))
            continue
        headers.append((name.decode("latin-1"), value.decode("latin-1")))
    client = scope.get("client") or ("", 0)
    headers += [
        ("x-forwarded-for", client[0]), ("x-forwarded-proto", scope.get("scheme", "http").replace("ws", "http")),
        ("x-forwarded-host", _header(scope, b"host")), ("x-forwarded-prefix", prefix),
    ]  # fmt: skip
    return headers


def _platform_cookie_names() -> frozenset[str]:
    return frozenset({settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, TOKEN_COOKIE})


def _pod_cookies(header: str) -> str:
    """The Cookie header without the platform's cookies (its session never reaches a pod)."""
    platform = _platform_cookie_names()
    kept = [part.strip() for part in header.split(";") if part.strip().split("=", 1)[0].strip() not in platform]
    return "; ".join(part for part in kept if part)


def _confined(set_cookies: list[str], prefix: str) -> list[str]:
    """The pod's cookies, each confined to its path (no Domain), none named like the platform's."""
    platform = _platform_cookie_names()
    confined = []
    for line in set_cookies:
        parsed: SimpleCookie = SimpleCookie()
        with contextlib.suppress(CookieError):  # a malformed cookie from the pod is dropped, not relayed
            parsed.load(line)
        for name, morsel in parsed.items():
            if name in platform:
                continue
            morsel["path"] = f"{prefix}/"
            morsel["domain"] = ""
            confined.append(morsel.OutputString())
    return confined


# --- small answers -----------------------------------------------------------------------------


async def refuse(send: Any, refusal: PortRefusal) -> None:
    kinds = {401: "authentication_error", 403: "permission_error", 404: "not_found_error", 503: "unavailable",
             502: "bad_gateway"}  # fmt: skip
    body = _json_error(kinds.get(refusal.status, "error"), refusal.message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _starting_page(send: Any, refusal: PortRefusal) -> None:
    """For a browser: the app in the pod is not listening yet (it may still be starting, as JupyterLab
    takes a few seconds after its machine runs): say so and look again every 2 s."""
    body = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=2>"
        "<title>Starting…</title></head><body style='font-family:sans-serif;margin:3em'>"
        "<h1>The pod's app is not answering yet</h1><p>It may still be starting; this page looks again every "
        f"2 seconds.</p><p style='color:#666'>{html.escape(refusal.message)}</p></body></html>"
    ).encode()
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", b"2"), (b"cache-control", b"no-store")]  # fmt: skip
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Any, location: str, *, cookies: list[str] | None = None) -> None:
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
    headers += [(b"set-cookie", cookie.encode("latin-1")) for cookie in cookies or []]
    await send({"type": "http.response.start", "status": 307, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _json_error(kind: str, message: str) -> bytes:
    return json.dumps({"error": {"type": kind, "message": message}}).encode()


def _cookies(scope: dict[str, Any]) -> dict[str, str]:
    return parse_cookie(_header(scope, b"cookie"))


def _header(scope: dict[str, Any], name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def _secure(scope: dict[str, Any]) -> str:
    return "; Secure" if scope.get("scheme") in ("https", "wss") else ""


def _http_client() -> httpx.AsyncClient:
    global _client
    if _client is None:
        # A jar that keeps nothing: one client serves every user, so a cookie a pod sets must go back to
        # the browser that asked, never ride along with someone else's next request.
        keeps_nothing = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
        _client = httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False, cookies=keeps_nothing)
    return _client


async def pod_proxy_shutdown() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None


def decisions_clear() -> None:
    """Forget every cached decision (tests that change a pod between requests)."""
    _decisions.clear()
