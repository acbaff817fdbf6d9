"""A local fake of Stripe's HTTP API for tests.

It follows Stripe's documented v1 API contract, so the real ``stripe`` SDK can talk to it unchanged
(``stripe.StripeClient("sk_test_...", base_addresses={"api": fake.url})``):

* requests are form-encoded with Stripe's bracket notation (``metadata[org_id]=org_x``,
  ``line_items[0][price_data][unit_amount]=2500``, ``expand[]=payment_method``), on GET in the query string;
* responses are JSON objects carrying ``id``, ``object``, ``created`` (unix time) and ``livemode: false``;
* errors are ``{"error": {"type", "code", "decline_code", "message", "param"}}``: 400 ``invalid_request_error``
  for bad parameters, 402 ``card_error`` for declines, 404 ``resource_missing`` for unknown objects, 401 without
  a ``Bearer sk_test_...`` key;
* a POST repeated with the same ``Idempotency-Key`` replays the stored response (``Idempotent-Replayed: true``)
  without creating anything; the same key with another endpoint or other parameters is a 400
  ``idempotency_error``. As on Stripe, requests that fail validation (400) are not stored;
* ``expand[]`` inlines referenced objects (``payment_method``, ``customer``, ``payment_intent``, ...).

Endpoints::

    POST /v1/customers                 GET /v1/customers/{id}          POST /v1/customers/{id}
    POST /v1/checkout/sessions         GET /v1/checkout/sessions/{id}  (mode=payment with price_data, mode=setup)
    POST /v1/payment_intents           GET /v1/payment_intents/{id}
    GET  /v1/payment_methods/{id}      GET /v1/setup_intents/{id}      GET /v1/charges/{id}

Stripe's test payment methods (``pm_card_visa``, ``pm_card_mastercard``, ``pm_card_amex``, ``pm_card_chargeDeclined``,
``pm_card_chargeDeclinedInsufficientFunds``, ``pm_card_chargeDeclinedExpiredCard``) work as on Stripe: each use
creates a new ``pm_...`` object. Only ``usd`` is accepted as a currency (this project's policy).

What the browser would do is driven from Python: ``complete_checkout`` pays a Checkout Session (``GET/POST
/pay/{session_id}``, the session's ``url``, does the same over HTTP and redirects to ``success_url``);
``decline_payment_method`` makes a card decline; ``event`` builds an Event and ``sign_webhook`` signs a payload
exactly as Stripe signs webhooks (``Stripe-Signature: t=...,v1=<HMAC-SHA256>``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import html
import json
import re
import secrets
import string
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

__all__ = ["API_VERSION", "FakeStripe", "RecordedRequest", "StripeApiError", "decode_form", "sign_webhook"]

API_VERSION = "2025-09-30.clover"
CURRENCIES = frozenset({"usd"})
MIN_AMOUNT = 50  # Stripe's minimum charge: $0.50
MAX_AMOUNT = 99_999_999  # Stripe's maximum charge: $999,999.99

_ID_ALPHABET = string.ascii_lowercase + string.digits
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")
_EXPANDABLE = frozenset(
    (
        "customer",
        "payment_method",
        "payment_intent",
        "setup_intent",
        "latest_charge",
        "charge",
        "default_payment_method",
    )
)

# Stripe's test PaymentMethod tokens: token -> (brand, last4, decline_code or None).
_TEST_CARDS: dict[str, tuple[str, str, str | None]] = {
    "pm_card_visa": ("visa", "4242", None),
    "pm_card_mastercard": ("mastercard", "4444", None),
    "pm_card_amex": ("amex", "8431", None),
    "pm_card_chargeDeclined": ("visa", "0002", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995", "insufficient_funds"),
    "pm_card_chargeDeclinedExpiredCard": ("visa", "0069", "expired_card"),
}
# decline_code -> (error code, message), as Stripe reports them.
_DECLINES: dict[str, tuple[str, str]] = {
    "generic_decline": ("card_declined", "Your card was declined."),
    "insufficient_funds": ("card_declined", "Your card has insufficient funds."),
    "expired_card": ("expired_card", "Your card has expired."),
}


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-style id: the prefix followed by random lowercase alphanumerics."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _now() -> int:
    return int(time.time())


def sign_webhook(payload: bytes | str, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send with ``payload``: ``t=<ts>,v1=<hex HMAC-SHA256>``.

    The HMAC key is the endpoint secret and the message is ``f"{ts}.{payload}"``, so
    ``stripe.Webhook.construct_event(payload, header, secret)`` accepts it.
    """
    body = payload.encode("utf-8") if isinstance(payload, str) else payload
    ts = _now() if timestamp is None else timestamp
    digest = hmac.new(secret.encode("utf-8"), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


class StripeApiError(Exception):
    """An error response in Stripe's shape; raised by handlers, rendered by the dispatcher."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error: dict[str, Any] = {
            "type": type,
            "code": code,
            "decline_code": decline_code,
            "message": message,
            "param": param,
            **(extra or {}),
        }
        if code is not None:
            self.error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"

    def body(self) -> dict[str, Any]:
        return {"error": self.error}


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeApiError:
    return StripeApiError(400, message, param=param, code=code)


def _missing(object_name: str, object_id: str, *, param: str, status: int = 400) -> StripeApiError:
    return StripeApiError(status, f"No such {object_name}: '{object_id}'", code="resource_missing", param=param)


# --- form decoding ---------------------------------------------------------------------------------------------


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Decode Stripe's bracket notation into nested values.

    ``a[b][c]=1`` -> ``{"a": {"b": {"c": "1"}}}``; ``a[0][b]=1&a[1][b]=2`` -> ``{"a": [{"b": "1"}, {"b": "2"}]}``;
    ``a[]=x&a[]=y`` -> ``{"a": ["x", "y"]}``. Leaves stay strings, as on the wire.
    """
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY_RE.match(key)
        if match is None:
            raise _invalid(f"Invalid parameter name: {key}", param=key)
        segments = [match.group(1), *_SEGMENT_RE.findall(match.group(2))]
        if "" in segments[:-1]:  # ``[]`` only ends a key
            raise _invalid(f"Invalid parameter name: {key}", param=key)
        node = root
        for index, segment in enumerate(segments):
            last = index == len(segments) - 1
            if last:
                if isinstance(node.get(segment), dict | list):
                    raise _invalid(f"Invalid parameter: {key} is both a value and a hash", param=key)
                node[segment] = value
            elif segments[index + 1] == "":
                target = node.setdefault(segment, [])
                if not isinstance(target, list):
                    raise _invalid(f"Invalid array: {key}", param=key)
                target.append(value)
                break
            else:
                child = node.setdefault(segment, {})
                if not isinstance(child, dict):
                    raise _invalid(f"Invalid hash: {key}", param=key)
                node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def _listify(value: Any) -> Any:
    """Turn hashes keyed ``0..n-1`` (from ``a[0]``, ``a[1]``) into lists, recursively."""
    if isinstance(value, list):
        return [_listify(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: _listify(item) for key, item in value.items()}
    if converted and all(key.isdigit() for key in converted):
        indexes = sorted(int(key) for key in converted)
        if indexes == list(range(len(indexes))):
            return [converted[str(i)] for i in indexes]
    return converted


class _Params:
    """Typed, validating access to decoded parameters; errors name the parameter in bracket notation."""

    def __init__(self, data: dict[str, Any], prefix: str = "") -> None:
        self.data = data
        self.prefix = prefix

    def path(self, name: str) -> str:
        return f"{self.prefix}[{name}]" if self.prefix else name

    def has(self, name: str) -> bool:
        return self.data.get(name) not in (None, "")

    def _raw(self, name: str, required: bool) -> Any:
        value = self.data.get(name)
        if value == "" and required:
            raise _invalid(
                f"You passed an empty string for '{self.path(name)}'. We assume empty values are an attempt to unset "
                f"a parameter; however '{self.path(name)}' cannot be unset.",
                param=self.path(name),
                code="parameter_invalid_empty",
            )
        if value in (None, ""):
            if required:
                raise _invalid(
                    f"Missing required param: {self.path(name)}.", param=self.path(name), code="parameter_missing"
                )
            return None
        return value

    def text(self, name: str, *, required: bool = False, max_length: int = 5000) -> str | None:
        value = self._raw(name, required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise _invalid(f"Invalid string: {value!r}", param=self.path(name))
        if len(value) > max_length:
            raise _invalid(
                f"Invalid string: {value[:20]}...; must be at most {max_length} characters", param=self.path(name)
            )
        return value

    def required_text(self, name: str, *, max_length: int = 5000) -> str:
        value = self.text(name, required=True, max_length=max_length)
        assert value is not None
        return value

    def integer(self, name: str, *, required: bool = False, minimum: int | None = None) -> int | None:
        value = self._raw(name, required)
        if value is None:
            return None
        if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
            raise _invalid(f"Invalid integer: {value}", param=self.path(name), code="parameter_invalid_integer")
        number = int(value)
        if minimum is not None and number < minimum:
            raise _invalid(
                f"This value must be greater than or equal to {minimum}.",
                param=self.path(name),
                code="parameter_invalid_integer",
            )
        return number

    def required_integer(self, name: str, *, minimum: int | None = None) -> int:
        value = self.integer(name, required=True, minimum=minimum)
        assert value is not None
        return value

    def boolean(self, name: str) -> bool | None:
        value = self._raw(name, False)
        if value is None:
            return None
        if value not in ("true", "false"):
            raise _invalid(f"Invalid boolean: {value}", param=self.path(name))
        return value == "true"

    def choice(self, name: str, choices: tuple[str, ...], *, required: bool = False) -> str | None:
        value = self.text(name, required=required)
        if value is not None and value not in choices:
            raise _invalid(f"Invalid {name}: must be one of {', '.join(choices)}", param=self.path(name))
        return value

    def currency(self, name: str, *, required: bool = False) -> str | None:
        value = self.text(name, required=required)
        if value is None:
            return None
        if value.lower() not in CURRENCIES:
            raise _invalid(
                f"Invalid currency: {value}. This account only supports: {', '.join(sorted(CURRENCIES))}.",
                param=self.path(name),
            )
        return value.lower()

    def url(self, name: str, *, required: bool = False) -> str | None:
        value = self.text(name, required=required, max_length=5000)
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise _invalid("Not a valid URL", param=self.path(name), code="url_invalid")
        return value

    def hash(self, name: str, *, required: bool = False) -> _Params | None:
        value = self._raw(name, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _invalid(f"Invalid object: {self.path(name)} must be a hash", param=self.path(name))
        return _Params(value, self.path(name))

    def required_hash(self, name: str) -> _Params:
        value = self.hash(name, required=True)
        assert value is not None
        return value

    def hashes(self, name: str, *, required: bool = False) -> list[_Params]:
        value = self._raw(name, required)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise _invalid(f"Invalid array: {self.path(name)} must be an array of hashes", param=self.path(name))
        if required and not value:
            raise _invalid(f"Missing required param: {self.path(name)}.", param=self.path(name))
        return [_Params(item, f"{self.path(name)}[{index}]") for index, item in enumerate(value)]

    def strings(self, name: str) -> list[str]:
        value = self._raw(name, False)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise _invalid(f"Invalid array: {self.path(name)} must be an array of strings", param=self.path(name))
        return value

    def metadata(self, name: str = "metadata", *, keep_empty: bool = False) -> dict[str, str]:
        """A metadata hash; empty values (Stripe's way to unset a key) are dropped unless ``keep_empty``."""
        value = self.data.get(name)
        if value in (None, ""):
            return {}
        if isinstance(value, list):  # metadata[0]=... decodes like an array
            value = {str(index): item for index, item in enumerate(value)}
        if not isinstance(value, dict):
            raise _invalid(f"Invalid object: {self.path(name)} must be a hash", param=self.path(name))
        result: dict[str, str] = {}
        for key, item in value.items():
            param = f"{self.path(name)}[{key}]"
            if not isinstance(item, str):
                raise _invalid(f"Invalid value for {param}: metadata values must be strings", param=param)
            if len(key) > 40:
                raise _invalid("Metadata keys can have a maximum length of 40 characters.", param=param)
            if len(item) > 500:
                raise _invalid("Metadata values can have a maximum length of 500 characters.", param=param)
            if item or keep_empty:
                result[key] = item
        if len(result) > 50:
            raise _invalid("Metadata can have a maximum of 50 keys.", param=self.path(name))
        return result


# --- the fake --------------------------------------------------------------------------------------------------


class RecordedRequest(NamedTuple):
    method: str
    path: str
    params: dict[str, Any]
    headers: dict[str, str]


class _StoredResponse(NamedTuple):
    method: str
    path: str
    params: dict[str, Any]
    status: int
    body: bytes
    request_id: str


_Handler = Callable[[_Params, str], dict[str, Any]]
_Response = tuple[int, dict[str, str], bytes]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeStripe


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "FakeStripe/1.0"

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, headers, payload = self.server.fake.handle(self.command, self.path, dict(self.headers.items()), body)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _dispatch  # http.server dispatches on do_<METHOD>

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on ``FakeStripe.requests`` instead."""


class FakeStripe:
    """An in-process Stripe API server on 127.0.0.1 (OS-chosen port), serving in a daemon thread."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.store: dict[str, dict[str, Any]] = {}
        self.requests: list[RecordedRequest] = []
        self._declines: dict[str, str] = {}  # payment method id -> decline_code
        self._idempotency: dict[tuple[str, str], _StoredResponse] = {}
        self._session_extras: dict[str, dict[str, Any]] = {}  # checkout session id -> creation params not echoed
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes: list[tuple[str, re.Pattern[str], _Handler]] = [
            ("POST", re.compile(r"/v1/customers"), self._create_customer),
            ("GET", re.compile(r"/v1/customers/([^/]+)"), self._retriever("customer")),
            ("POST", re.compile(r"/v1/customers/([^/]+)"), self._update_customer),
            ("POST", re.compile(r"/v1/checkout/sessions"), self._create_checkout_session),
            ("GET", re.compile(r"/v1/checkout/sessions/([^/]+)"), self._retriever("checkout.session")),
            ("POST", re.compile(r"/v1/payment_intents"), self._create_payment_intent),
            ("GET", re.compile(r"/v1/payment_intents/([^/]+)"), self._retriever("payment_intent")),
            ("GET", re.compile(r"/v1/payment_methods/([^/]+)"), self._retriever("payment_method")),
            ("GET", re.compile(r"/v1/setup_intents/([^/]+)"), self._retriever("setup_intent")),
            ("GET", re.compile(r"/v1/charges/([^/]+)"), self._retriever("charge")),
        ]

    # lifecycle ----------------------------------------------------------------------------------------------------

    def start(self) -> FakeStripe:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", 0), _RequestHandler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-stripe", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeStripe is not running; call start() first")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        """Forget every object, recorded request, idempotency key and registered decline."""
        with self._lock:
            self.store.clear()
            self.requests.clear()
            self._declines.clear()
            self._idempotency.clear()
            self._session_extras.clear()

    # inspection ---------------------------------------------------------------------------------------------------

    def get(self, object_id: str) -> dict[str, Any]:
        """A copy of a stored object; ``KeyError`` if there is none."""
        with self._lock:
            return copy.deepcopy(self.store[object_id])

    def objects(self, object_type: str) -> list[dict[str, Any]]:
        """Copies of the stored objects of one type (``"customer"``, ``"payment_intent"``, ...), oldest first."""
        with self._lock:
            return [copy.deepcopy(obj) for obj in self.store.values() if obj["object"] == object_type]

    # test-driving helpers -----------------------------------------------------------------------------------------

    def complete_checkout(self, session_id: str, *, payment_method_id: str = "pm_card_visa") -> dict[str, Any]:
        """Pay (mode=payment) or save a card (mode=setup) for an open Checkout Session, as the customer would.

        A Stripe test token (``pm_card_visa``, ...) becomes a new ``pm_...`` object, as on Stripe; any other id is
        used as given (created if unknown). The payment method is attached to the session's customer in setup
        mode, and in payment mode when ``payment_intent_data[setup_future_usage]`` was set. Returns the session.
        """
        with self._lock:
            session = self._stored(session_id, "checkout.session")
            if session["status"] != "open":
                raise ValueError(f"checkout session {session_id} is {session['status']}, not open")
            extras = self._session_extras[session_id]
            customer = session["customer"]
            attach = customer is not None and (session["mode"] == "setup" or extras["setup_future_usage"] is not None)
            payment_method = self._payment_method_from(payment_method_id)
            if payment_method["id"] in self._declines:
                raise ValueError(f"payment method {payment_method_id} declines; the session would stay open")
            if attach:
                payment_method["customer"] = customer
            if session["mode"] == "payment":
                intent = self._new_payment_intent(
                    amount=session["amount_total"],
                    currency=session["currency"],
                    customer=customer,
                    payment_method=payment_method["id"],
                    metadata=dict(extras["payment_intent_metadata"]),
                    description=None,
                )
                self._succeed(intent)
                session.update(status="complete", payment_status="paid", payment_intent=intent["id"])
            else:
                setup_intent = {
                    "id": new_id("seti_"),
                    "object": "setup_intent",
                    "created": _now(),
                    "livemode": False,
                    "status": "succeeded",
                    "usage": "off_session",
                    "customer": customer,
                    "payment_method": payment_method["id"],
                    "metadata": {},
                }
                self.store[setup_intent["id"]] = setup_intent
                session.update(status="complete", setup_intent=setup_intent["id"])
            return copy.deepcopy(session)

    def decline_payment_method(self, pm_id: str, *, decline_code: str = "generic_decline") -> None:
        """Make confirming a PaymentIntent with ``pm_id`` fail with a 402 card_error.

        An unknown ``pm_...`` id is stored as a new card; a ``pm_card_...`` test token makes every card created
        from it decline.
        """
        if decline_code not in _DECLINES:
            raise ValueError(f"unknown decline_code {decline_code!r}; one of {sorted(_DECLINES)}")
        with self._lock:
            if pm_id not in self.store and not pm_id.startswith("pm_card_"):
                self.add_payment_method(pm_id=pm_id)
            self._declines[pm_id] = decline_code

    def add_payment_method(
        self, customer: str | None = None, *, pm_id: str | None = None, brand: str = "visa", last4: str = "4242"
    ) -> dict[str, Any]:
        """Store a card PaymentMethod (say, one saved in an earlier session), optionally attached to ``customer``."""
        with self._lock:
            payment_method = {
                "id": pm_id or new_id("pm_"),
                "object": "payment_method",
                "created": _now(),
                "livemode": False,
                "type": "card",
                "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2030},
                "customer": customer,
                "metadata": {},
            }
            self.store[str(payment_method["id"])] = payment_method
            return copy.deepcopy(payment_method)

    def event(self, type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        """A Stripe Event object (a snapshot event) of ``type`` wrapping ``obj``."""
        return {
            "id": event_id or new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": _now(),
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type,
            "data": {"object": copy.deepcopy(obj)},
        }

    # HTTP -----------------------------------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> _Response:
        """Serve one request; returns (status, headers, body). The HTTP server calls this from its threads."""
        split = urlsplit(target)
        path = split.path
        error: StripeApiError | None
        try:
            raw = split.query if method == "GET" else body.decode("utf-8")
            params = decode_form(parse_qsl(raw, keep_blank_values=True))
        except (UnicodeDecodeError, StripeApiError) as exc:
            params = {}
            error = exc if isinstance(exc, StripeApiError) else _invalid("The request body is not valid UTF-8.")
        else:
            error = None
        with self._lock:
            self.requests.append(RecordedRequest(method, path, params, dict(headers)))
            if path.startswith("/pay/"):
                return self._pay_page(method, path.removeprefix("/pay/"), params)
            request_id = new_id("req_", 14)
            api_key, idempotency_key = "", None
            try:
                api_key = self._authenticate(headers)
                if error is not None:
                    raise error
                idempotency_key = _header(headers, "Idempotency-Key") if method == "POST" else None
                if idempotency_key is not None:
                    stored = self._idempotency.get((api_key, idempotency_key))
                    if stored is not None:
                        return self._replay(stored, method, path, params, request_id)
                status, payload = 200, self._route(method, path, params)
            except StripeApiError as exc:
                status, payload = exc.status, exc.body()
            except Exception as exc:
                status, payload = 500, {"error": {"type": "api_error", "message": f"{exc!r}\n{traceback.format_exc()}"}}
            encoded = json.dumps(payload, indent=2).encode()
            if idempotency_key is not None and (status < 400 or status == 402):
                self._idempotency[(api_key, idempotency_key)] = _StoredResponse(
                    method, path, params, status, encoded, request_id
                )
            response_headers = _json_headers(request_id)
            if idempotency_key is not None:
                response_headers["Idempotency-Key"] = idempotency_key
            return status, response_headers, encoded

    def _authenticate(self, headers: dict[str, str]) -> str:
        authorization = _header(headers, "Authorization") or ""
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            try:
                credentials = base64.b64decode(credentials).decode().partition(":")[0]
            except ValueError:
                credentials = ""
        elif scheme.lower() != "bearer":
            credentials = ""
        if not credentials:
            raise StripeApiError(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if not credentials.startswith("sk_test"):
            raise StripeApiError(401, f"Invalid API Key provided: {credentials[:8]}{'*' * 12}")
        return credentials

    def _replay(
        self, stored: _StoredResponse, method: str, path: str, params: dict[str, Any], request_id: str
    ) -> _Response:
        if (stored.method, stored.path) != (method, path):
            raise StripeApiError(
                400,
                "Keys for idempotent requests can only be used for the same endpoint they were first used for "
                f"('{stored.method} {stored.path}' vs '{method} {path}').",
                type="idempotency_error",
            )
        if stored.params != params:
            raise StripeApiError(
                400,
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                type="idempotency_error",
            )
        headers = _json_headers(request_id)
        headers["Idempotent-Replayed"] = "true"
        headers["Original-Request"] = stored.request_id
        return stored.status, headers, stored.body

    def _route(self, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is not None and route_method == method:
                wrapped = _Params(params)
                result = handler(wrapped, match.group(1) if pattern.groups else "")
                return self._expand(copy.deepcopy(result), wrapped.strings("expand"))
        raise StripeApiError(
            404,
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
        )

    def _expand(self, obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
        for dotted in sorted(paths, key=lambda item: item.count(".")):
            node: Any = obj
            *parents, leaf = dotted.split(".")
            for name in parents:
                node = node.get(name) if isinstance(node, dict) else None
            if not isinstance(node, dict) or leaf not in node or leaf not in _EXPANDABLE:
                raise _invalid(f"This property cannot be expanded ({dotted}).", param="expand")
            value = node[leaf]
            if isinstance(value, str) and value in self.store:
                node[leaf] = copy.deepcopy(self.store[value])
        return obj

    def _pay_page(self, method: str, session_id: str, params: dict[str, Any]) -> _Response:
        """The hosted Checkout page: GET shows it, POST pays and redirects to success_url."""
        session = self.store.get(session_id)
        if session is None or session["object"] != "checkout.session":
            return 404, {"Content-Type": "text/html"}, b"<h1>No such checkout session</h1>"
        if method == "POST":
            if session["status"] != "open":
                return 409, {"Content-Type": "text/html"}, b"<h1>This checkout session is no longer open</h1>"
            pm_id = params.get("payment_method")
            self.complete_checkout(session_id, payment_method_id=pm_id if isinstance(pm_id, str) else "pm_card_visa")
            location = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id)
            return 303, {"Location": location, "Content-Type": "text/html"}, b""
        action = "Pay" if session["mode"] == "payment" else "Save card"
        amount = "" if session["amount_total"] is None else f" {session['amount_total'] / 100:.2f} USD"
        page = (
            f"<!doctype html><title>Fake Stripe Checkout</title><h1>{html.escape(action)}{amount}</h1>"
            f'<form method="post"><input type="hidden" name="payment_method" value="pm_card_visa">'
            f'<button type="submit">{html.escape(action)}</button></form>'
        )
        if session["cancel_url"]:
            page += f'<a href="{html.escape(session["cancel_url"])}">Cancel</a>'
        return 200, {"Content-Type": "text/html; charset=utf-8"}, page.encode()

    # lookups --------------------------------------------------------------------------------------------------

    def _stored(self, object_id: str, object_type: str) -> dict[str, Any]:
        obj = self.store.get(object_id)
        if obj is None or obj["object"] != object_type:
            raise KeyError(f"no {object_type} {object_id!r}")
        return obj

    def _retriever(self, object_type: str) -> _Handler:
        def retrieve(params: _Params, object_id: str) -> dict[str, Any]:
            obj = self.store.get(object_id)
            if obj is None or obj["object"] != object_type:
                raise _missing(object_type, object_id, param="id", status=404)
            return obj

        return retrieve

    def _customer_ref(self, params: _Params) -> str | None:
        customer = params.text("customer")
        if customer is not None and self.store.get(customer, {}).get("object") != "customer":
            raise _missing("customer", customer, param=params.path("customer"))
        return customer

    def _is_test_token(self, pm_id: str) -> bool:
        """Stripe's ``pm_card_...`` test tokens, plus any such token a test registered as declining."""
        return (
            pm_id in _TEST_CARDS
            or pm_id.startswith("pm_card_chargeDeclined")
            or (pm_id.startswith("pm_card_") and pm_id in self._declines)
        )

    def _payment_method_ref(self, pm_id: str, *, param: str) -> dict[str, Any]:
        """The payment method a request names (a new one for a test token); 400 resource_missing if unknown."""
        stored = self.store.get(pm_id)
        if not self._is_test_token(pm_id) and (stored is None or stored["object"] != "payment_method"):
            raise _missing("PaymentMethod", pm_id, param=param)
        return self._payment_method_from(pm_id)

    def _payment_method_from(self, pm_id: str) -> dict[str, Any]:
        """A new payment method for a test token, else the stored ``pm_id``, else a new one with that id."""
        if not self._is_test_token(pm_id):
            if pm_id in self.store:
                return self._stored(pm_id, "payment_method")
            return self.store[self.add_payment_method(pm_id=pm_id)["id"]]
        brand, last4, decline_code = _TEST_CARDS.get(pm_id, ("visa", "0002", "generic_decline"))
        decline_code = self._declines.get(pm_id, decline_code)
        created = self.add_payment_method(brand=brand, last4=last4)
        if decline_code is not None:
            self._declines[created["id"]] = decline_code
        return self.store[created["id"]]

    # endpoints ------------------------------------------------------------------------------------------------

    def _create_customer(self, params: _Params, _: str) -> dict[str, Any]:
        customer = {
            "id": new_id("cus_", 14),
            "object": "customer",
            "created": _now(),
            "livemode": False,
            "email": params.text("email", max_length=512),
            "name": params.text("name", max_length=256),
            "description": params.text("description"),
            "phone": params.text("phone", max_length=20),
            "metadata": params.metadata(),
            "invoice_settings": {"default_payment_method": None},
        }
        self.store[str(customer["id"])] = customer
        return customer

    def _update_customer(self, params: _Params, customer_id: str) -> dict[str, Any]:
        customer = self.store.get(customer_id)
        if customer is None or customer["object"] != "customer":
            raise _missing("customer", customer_id, param="id", status=404)
        updates: dict[str, Any] = {}
        for name, limit in (("email", 512), ("name", 256), ("description", 5000), ("phone", 20)):
            if name in params.data:
                updates[name] = params.text(name, max_length=limit)
        metadata = dict(customer["metadata"])
        if params.data.get("metadata") == "":
            metadata = {}
        for key, value in params.metadata(keep_empty=True).items():
            if value:
                metadata[key] = value
            else:
                metadata.pop(key, None)
        invoice_settings = params.hash("invoice_settings")
        default_pm = invoice_settings.text("default_payment_method") if invoice_settings else None
        if default_pm is not None:
            param = "invoice_settings[default_payment_method]"
            payment_method = self.store.get(default_pm)
            if payment_method is None or payment_method["object"] != "payment_method":
                raise _missing("PaymentMethod", default_pm, param=param)
            if payment_method["customer"] != customer_id:
                raise _invalid(
                    f"The customer does not have a payment method with the ID {default_pm}. "
                    "The payment method must be attached to the customer.",
                    param=param,
                )
        customer.update(updates, metadata=metadata)
        if invoice_settings is not None and "default_payment_method" in invoice_settings.data:
            customer["invoice_settings"]["default_payment_method"] = default_pm
        return customer

    def _create_checkout_session(self, params: _Params, _: str) -> dict[str, Any]:
        mode = params.choice("mode", ("payment", "setup", "subscription"), required=True)
        if mode == "subscription":
            raise _invalid("This fake Stripe server does not support mode=subscription.", param="mode")
        success_url = params.url("success_url", required=True)
        cancel_url = params.url("cancel_url")
        customer = self._customer_ref(params)
        client_reference_id = params.text("client_reference_id", max_length=200)
        metadata = params.metadata()
        intent_data = params.hash("payment_intent_data")
        amount_total: int | None = None
        setup_future_usage: str | None = None
        intent_metadata: dict[str, str] = {}
        if mode == "payment":
            amount_total = 0
            for item in params.hashes("line_items", required=True):
                if item.has("price"):
                    raise _missing("price", str(item.data["price"]), param=item.path("price"))
                price_data = item.required_hash("price_data")
                price_data.currency("currency", required=True)
                unit_amount = price_data.required_integer("unit_amount", minimum=1)
                if price_data.has("product"):
                    raise _missing("product", str(price_data.data["product"]), param=price_data.path("product"))
                price_data.required_hash("product_data").required_text("name")
                amount_total += unit_amount * item.required_integer("quantity", minimum=1)
            if amount_total < MIN_AMOUNT:
                raise _invalid(
                    "The Checkout Session's total amount due must add up to at least $0.50 usd",
                    param="line_items",
                    code="amount_too_small",
                )
            currency: str | None = "usd"
            if intent_data is not None:
                setup_future_usage = intent_data.choice("setup_future_usage", ("on_session", "off_session"))
                intent_metadata = intent_data.metadata()
        else:
            if params.has("line_items"):
                raise _invalid("You can not pass `line_items` in `setup` mode.", param="line_items")
            if intent_data is not None:
                raise _invalid("You can not pass `payment_intent_data` in `setup` mode.", param="payment_intent_data")
            currency = params.currency("currency", required=not params.strings("payment_method_types"))
        created = _now()
        session_id = new_id("cs_test_", 58)
        session = {
            "id": session_id,
            "object": "checkout.session",
            "created": created,
            "expires_at": created + 24 * 3600,
            "livemode": False,
            "mode": mode,
            "status": "open",
            "payment_status": "unpaid" if mode == "payment" else "no_payment_required",
            "amount_total": amount_total,
            "amount_subtotal": amount_total,
            "currency": currency,
            "customer": customer,
            "client_reference_id": client_reference_id,
            "metadata": metadata,
            "url": f"{self.url}/pay/{session_id}",
            "payment_intent": None,
            "setup_intent": None,
            "success_url": success_url,
            "cancel_url": cancel_url,
        }
        self.store[session_id] = session
        self._session_extras[session_id] = {
            "setup_future_usage": setup_future_usage,
            "payment_intent_metadata": intent_metadata,
        }
        return session

    def _create_payment_intent(self, params: _Params, _: str) -> dict[str, Any]:
        amount = params.required_integer("amount")
        if amount < MIN_AMOUNT:
            raise _invalid("Amount must be at least $0.50 usd", param="amount", code="amount_too_small")
        if amount > MAX_AMOUNT:
            raise _invalid("Amount must be no more than $999,999.99", param="amount", code="amount_too_large")
        currency = params.currency("currency", required=True)
        assert currency is not None
        customer = self._customer_ref(params)
        confirm = bool(params.boolean("confirm"))
        if params.has("off_session"):
            if params.data["off_session"] not in ("true", "false", "one_off", "recurring"):
                raise _invalid(f"Invalid off_session: {params.data['off_session']}", param="off_session")
            if not confirm:
                raise _invalid("You can only pass `off_session` when `confirm` is true.", param="off_session")
        description = params.text("description", max_length=1000)
        metadata = params.metadata()
        pm_id = params.text("payment_method")
        payment_method = self._payment_method_ref(pm_id, param="payment_method") if pm_id else None
        if payment_method is not None and payment_method["customer"] not in (None, customer):
            raise _invalid(
                f"The provided PaymentMethod {payment_method['id']} is attached to Customer "
                f"{payment_method['customer']}; pass customer={payment_method['customer']} to use it.",
                param="payment_method",
            )
        if confirm and payment_method is None:
            raise _invalid(
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                param="payment_method",
                code="payment_intent_unexpected_state",
            )
        intent = self._new_payment_intent(
            amount=amount,
            currency=currency,
            customer=customer,
            payment_method=payment_method["id"] if payment_method else None,
            metadata=metadata,
            description=description,
        )
        if confirm:
            assert payment_method is not None
            decline_code = self._declines.get(payment_method["id"])
            if decline_code is not None:
                self._decline(intent, payment_method, decline_code)
            self._succeed(intent)
        return intent

    def _new_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str | None,
        payment_method: str | None,
        metadata: dict[str, str],
        description: str | None,
    ) -> dict[str, Any]:
        intent_id = new_id("pi_")
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "created": _now(),
            "livemode": False,
            "amount": amount,
            "amount_received": 0,
            "currency": currency,
            "customer": customer,
            "description": description,
            "payment_method": payment_method,
            "status": "requires_confirmation" if payment_method else "requires_payment_method",
            "client_secret": f"{intent_id}_secret_{new_id('', 24)}",
            "capture_method": "automatic",
            "metadata": metadata,
            "latest_charge": None,
            "last_payment_error": None,
        }
        self.store[intent_id] = intent
        return intent

    def _new_charge(self, intent: dict[str, Any], *, failure_code: str | None, failure_message: str | None) -> str:
        succeeded = failure_code is None
        charge = {
            "id": new_id("ch_"),
            "object": "charge",
            "created": _now(),
            "livemode": False,
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if succeeded else 0,
            "currency": intent["currency"],
            "customer": intent["customer"],
            "payment_intent": intent["id"],
            "payment_method": intent["payment_method"],
            "status": "succeeded" if succeeded else "failed",
            "paid": succeeded,
            "captured": succeeded,
            "failure_code": failure_code,
            "failure_message": failure_message,
            "metadata": dict(intent["metadata"]),
        }
        self.store[charge["id"]] = charge
        return charge["id"]

    def _succeed(self, intent: dict[str, Any]) -> None:
        intent["latest_charge"] = self._new_charge(intent, failure_code=None, failure_message=None)
        intent.update(status="succeeded", amount_received=intent["amount"])

    def _decline(self, intent: dict[str, Any], payment_method: dict[str, Any], decline_code: str) -> None:
        """Record a failed charge on ``intent`` and raise the 402 card_error Stripe returns."""
        code, message = _DECLINES[decline_code]
        charge_id = self._new_charge(intent, failure_code=code, failure_message=message)
        error = StripeApiError(
            402,
            message,
            type="card_error",
            code=code,
            decline_code=decline_code,
            extra={"charge": charge_id, "payment_method": copy.deepcopy(payment_method)},
        )
        intent.update(
            status="requires_payment_method",
            payment_method=None,
            latest_charge=charge_id,
            last_payment_error=copy.deepcopy(error.error),
        )
        error.error["payment_intent"] = copy.deepcopy(intent)
        raise error


def _header(headers: dict[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _json_headers(request_id: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "Request-Id": request_id, "Stripe-Version": API_VERSION}
