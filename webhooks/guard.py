"""Where webhooks may go: never to the platform's own network.

A receiver's URL is user input, so a delivery could be aimed at the metadata service, the database or
anything else only reachable from inside. Every path that contacts a receiver (create, update, test,
each delivery) goes through `post`, which resolves the host itself, refuses the request if any
address it resolves to is internal, and then connects to the checked address (the name travels in
the Host header and TLS SNI), so a DNS answer that changes between the check and the connection
cannot redirect it. Redirects are not followed. Operators name internal receivers they trust in
WEBHOOK_ALLOWED_HOSTS (empty by default).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from gpucloud.core.http import tls_context

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# Shared address space for carrier-grade NAT (RFC 6598): not "private" to Python, internal all the same.
CGNAT = ipaddress.ip_network("100.64.0.0/10")
# NAT64 (RFC 6052): an IPv6 address that carries an IPv4 one in its last 32 bits.
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeDestination(ValueError):
    """The URL may not receive webhooks; the message says why, for the user."""


@dataclass(frozen=True)
class Destination:
    url: str
    scheme: str
    host: str
    port: int


def destination_check(url: str, *, allow_http: bool, allowed_hosts: Iterable[str] = ()) -> Destination:
    """The URL's parts once its form is acceptable: https (http only when `allow_http`, i.e. in
    debug, or for an allowed host), a host, no credentials. Addresses are checked by `resolve_checked`."""
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower().rstrip(".")
    except ValueError:  # an unbalanced or invalid [IPv6] host: urlsplit refuses it
        raise UnsafeDestination("The webhook URL's host is not a valid name or address.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http"):
        raise UnsafeDestination("Webhook URLs must start with https://.")
    if not host:
        raise UnsafeDestination("The webhook URL has no host.")
    if parts.username or parts.password:
        raise UnsafeDestination("Webhook URLs may not carry a user name or password; sign with the secret instead.")
    if scheme == "http" and not allow_http and host not in set(allowed_hosts):
        raise UnsafeDestination("Webhook URLs must use https:// (http:// is accepted only in debug).")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UnsafeDestination("The webhook URL's port is not a number between 1 and 65535.") from None
    return Destination(url=url.strip(), scheme=scheme, host=host, port=port)


def internal_reason(address: IPAddress) -> str | None:
    """Why `address` is internal (loopback, private, link-local, CGNAT, unique-local, ...), or None."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = (
            address.ipv4_mapped
            or address.sixtofour
            or (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in NAT64 else None)
        )
        if embedded is not None:
            reason = internal_reason(embedded)
            return f"{reason} (inside an IPv6 address)" if reason else None
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (such as the cloud metadata service)"),
        (isinstance(address, ipaddress.IPv4Address) and address in CGNAT, "a carrier-grade NAT address"),
        (isinstance(address, ipaddress.IPv6Address) and address in ipaddress.ip_network("fc00::/7"),
         "a unique-local IPv6 address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_private, "a private network address"),
        (address.is_multicast, "a multicast address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public internet address"),
    )  # fmt: skip
    return next((reason for matched, reason in checks if matched), None)


def system_resolver(host: str, port: int) -> list[str]:
    try:
        answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeDestination(f"The webhook host {host!r} does not resolve.") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in answers))


def resolve_checked(
    destination: Destination, *, allowed_hosts: Iterable[str] = (), resolver: Resolver = system_resolver
) -> str:
    """The address to connect to: every address the host resolves to must be public (one bad answer
    refuses the host, so a round-robin cannot slip an internal one in), unless the operator allowed it."""
    try:
        addresses = [ipaddress.ip_address(destination.host)]
    except ValueError:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(destination.host, destination.port)]
    if not addresses:
        raise UnsafeDestination(f"The webhook host {destination.host!r} does not resolve.")
    if destination.host not in set(allowed_hosts):
        for address in addresses:
            reason = internal_reason(address)
            if reason:
                raise UnsafeDestination(
                    f"Webhooks cannot be delivered to {destination.host} ({address}): it is {reason}. "
                    "Use a public URL; an operator can allow internal receivers in WEBHOOK_ALLOWED_HOSTS."
                )
    return str(addresses[0])


def post(
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    timeout: float,
    allow_http: bool,
    allowed_hosts: Iterable[str] = (),
    resolver: Resolver = system_resolver,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Response:
    """POST to a receiver after checking where it is, connecting to the checked address; a redirect
    comes back as the response (it is not followed). Raises UnsafeDestination or httpx errors."""
    allowed = list(allowed_hosts)
    destination = destination_check(url, allow_http=allow_http, allowed_hosts=allowed)
    address = resolve_checked(destination, allowed_hosts=allowed, resolver=resolver)
    pinned = httpx.URL(destination.url).copy_with(host=address)
    request_headers = {**headers, "Host": _host_header(destination)}
    verify = tls_context(trust_env=False)
    with httpx.Client(
        timeout=timeout, follow_redirects=False, transport=transport, trust_env=False, verify=verify
    ) as client:
        request = client.build_request("POST", pinned, content=content, headers=request_headers)
        if destination.scheme == "https":
            request.extensions["sni_hostname"] = destination.host  # certificates are checked for the name
        return client.send(request)


def _host_header(destination: Destination) -> str:
    default = 443 if destination.scheme == "https" else 80
    host = f"[{destination.host}]" if ":" in destination.host else destination.host
    return host if destination.port == default else f"{host}:{destination.port}"
