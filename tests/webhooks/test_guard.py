"""Webhooks never reach the platform's own network: a matrix of internal destinations (loopback,
private, link-local and the metadata service, CGNAT, unique-local, IPv4-mapped and NAT64 forms,
numeric spellings, a host with one bad answer among good ones) is refused before any connection;
https is required outside debug; the operator's allow-list admits a named internal receiver; the
request goes to the checked address with the name in Host, and redirects are not followed."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from webhooks.guard import UnsafeDestination, destination_check, post, resolve_checked, system_resolver

PUBLIC = "93.184.216.34"
NAMES = {
    "hooks.example.com": [PUBLIC],
    "localhost.example": ["127.0.0.1"],
    "rebind.example": [PUBLIC, "10.0.0.1"],  # one internal answer among public ones
    "v6only.example": ["fd12:3456::1"],
}


def fake_resolver(host: str, port: int) -> list[str]:
    return NAMES.get(host, [])


def refusal(url: str, *, allowed: tuple[str, ...] = ()) -> str:
    with pytest.raises(UnsafeDestination) as caught:
        destination = destination_check(url, allow_http=False, allowed_hosts=allowed)
        resolve_checked(destination, allowed_hosts=allowed, resolver=fake_resolver)
    return str(caught.value)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://127.0.0.1/hook", "a loopback address"),
        ("https://127.9.9.9/hook", "a loopback address"),
        ("https://localhost.example/hook", "a loopback address"),
        ("https://[::1]/hook", "a loopback address"),
        ("https://10.1.2.3/hook", "a private network address"),
        ("https://172.16.0.9/hook", "a private network address"),
        ("https://192.168.1.20:8443/hook", "a private network address"),
        ("https://169.254.169.254/latest/meta-data/", "a link-local address (such as the cloud metadata service)"),
        ("https://[fe80::1]/hook", "a link-local address"),
        ("https://100.64.0.1/hook", "a carrier-grade NAT address"),
        ("https://100.127.255.254/hook", "a carrier-grade NAT address"),
        ("https://[fd00::5]/hook", "a unique-local IPv6 address"),
        ("https://v6only.example/hook", "a unique-local IPv6 address"),
        ("https://[::ffff:127.0.0.1]/hook", "a loopback address (inside an IPv6 address)"),
        ("https://[::ffff:169.254.169.254]/hook", "a link-local address (such as the cloud metadata service) (inside"),
        ("https://[::ffff:10.0.0.1]/hook", "a private network address (inside an IPv6 address)"),
        ("https://[64:ff9b::a9fe:a9fe]/hook", "a link-local address (such as the cloud metadata service) (inside"),
        ("https://0.0.0.0/hook", "the unspecified address"),
        ("https://rebind.example/hook", "rebind.example (10.0.0.1): it is a private network address"),
        ("https://unknown.example/hook", "does not resolve"),
        ("http://hooks.example.com/hook", "must use https://"),
        ("ftp://hooks.example.com/hook", "must start with https://"),
        ("https://user:secret@hooks.example.com/hook", "may not carry a user name or password"),
        ("https:///hook", "has no host"),
        ("https://hooks.example.com:99999/hook", "port is not a number"),
        ("http://[::1/z", "not a valid name or address"),
    ],
)
def test_internal_or_malformed_destinations_are_refused(url: str, says: str) -> None:
    assert says in refusal(url)


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.0.0.1", "017700000001", "127.1"])
def test_numeric_spellings_of_loopback_are_refused_as_the_system_resolves_them(spelling: str) -> None:
    destination = destination_check(f"https://{spelling}/hook", allow_http=False)
    with pytest.raises(UnsafeDestination, match="a loopback address"):
        resolve_checked(destination, resolver=system_resolver)


def test_public_receivers_pass_and_the_allow_list_admits_named_internal_ones() -> None:
    assert resolve_checked(destination_check("https://hooks.example.com/x", allow_http=False),
                           resolver=fake_resolver) == PUBLIC  # fmt: skip
    allowed = ("localhost.example",)
    destination = destination_check("http://localhost.example:9000/x", allow_http=False, allowed_hosts=allowed)
    assert resolve_checked(destination, allowed_hosts=allowed, resolver=fake_resolver) == "127.0.0.1"
    assert "a loopback address" in refusal("https://localhost.example/x", allowed=("other.example",))
    assert destination_check("http://hooks.example.com/x", allow_http=True).scheme == "http"  # debug


class Receiver(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.seen.append((self.path, self.headers["Host"], body))
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        else:
            self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    Receiver.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_a_delivery_connects_to_the_checked_address_and_does_not_follow_redirects(receiver: int) -> None:
    allowed = ["localhost.example"]
    common = {"content": b'{"type": "test"}', "headers": {"Content-Type": "application/json"}, "timeout": 5,
              "allow_http": False, "allowed_hosts": allowed, "resolver": fake_resolver}  # fmt: skip
    answer = post(f"http://localhost.example:{receiver}/hook", **common)  # type: ignore[arg-type]
    assert answer.status_code == 204
    moved = post(f"http://localhost.example:{receiver}/moved", **common)  # type: ignore[arg-type]
    assert moved.status_code == 302  # handed back, not followed to the metadata service
    assert Receiver.seen == [("/hook", f"localhost.example:{receiver}", b'{"type": "test"}'),
                             ("/moved", f"localhost.example:{receiver}", b'{"type": "test"}')]  # fmt: skip
    with pytest.raises(UnsafeDestination):
        post(f"http://127.0.0.1:{receiver}/hook", **{**common, "allowed_hosts": []})  # type: ignore[arg-type]
    assert len(Receiver.seen) == 2  # the refused one never connected
