"""One GPU cloud's REST API over httpx, as every cloud driver calls it: a configurable base URL, the
operator's key in a header, a timeout on every call, and the cloud's answers mapped to the driver
contract's ProviderError:

- a timeout or a connection failure: retryable;
- 401/403: permanent ("the cloud refused the API key"); the key itself is never logged or shown;
- 404: CloudNotFound (drivers read it as "gone" where that is what it means);
- 429: retryable with the cloud's Retry-After (seconds or an HTTP date) where it sent one. Until then,
  or for `backoff_seconds` when it sent none (Vast answers 429 in plain text without one), no call of
  this provider leaves this platform: the wait is shared by every process through the cache, so beat,
  launches and the reconciler do not keep hammering a cloud that asked us to slow down;
- 5xx: retryable;
- any other 4xx: the driver's `refusal` hook says what it means (each cloud has its own shape for "no
  capacity"), else permanent, with the cloud's own message;
- a 2xx that says the quota is spent (RunPod's `RateLimit` header on every answer): the driver's `pace`
  hook says how long to wait, and that wait is shared like a 429's, so the next call does not earn one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.core.cache import cache

from fleet.providers.base import ProviderError
from gpucloud.core.http import tls_context

logger = logging.getLogger(__name__)

MESSAGE_FIELDS = ("detail", "message", "error", "msg", "errors")
MAX_MESSAGE = 300
MAX_RETRY_AFTER_SECONDS = 3600.0


class CloudNotFound(ProviderError):
    """The cloud answered 404 for the thing asked about."""


Refusal = Callable[[httpx.Response, str], ProviderError | None]
Pace = Callable[[httpx.Response], float | None]


class CloudApi:
    """`cloud` names it in messages ("RunPod"); `slug` is the provider row (the backoff is per row:
    two accounts on one cloud have their own limits)."""

    def __init__(
        self,
        *,
        cloud: str,
        slug: str,
        base_url: str,
        headers: dict[str, str],
        timeout: httpx.Timeout,
        backoff_seconds: float = 10.0,
        refusal: Refusal | None = None,
        pace: Pace | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.cloud = cloud
        self.slug = slug
        self.backoff_seconds = backoff_seconds
        self.refusal = refusal
        self.pace = pace
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            trust_env=False,
            transport=transport,
            verify=tls_context(trust_env=False),
        )

    def close(self) -> None:
        self._client.close()

    def call(self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None) -> Any:
        """The decoded JSON answer (None for an empty body); a ProviderError for anything but 2xx."""
        response = self.send(method, path, params=params, json_body=json_body)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ProviderError(f"{self.cloud} answered {method} {path} with a body that is not JSON.") from exc

    def send(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json_body: Any = None
    ) -> httpx.Response:
        """The raw 2xx response (for answers that are not JSON, such as logs)."""
        wait_out_backoff(self.cloud, self.slug)
        started = time.monotonic()
        try:
            response = self._client.request(method, path, params=_clean(params), json=json_body)
        except httpx.TimeoutException as exc:
            raise ProviderError(f"{self.cloud} did not answer {method} {path} in time.") from exc
        except httpx.TransportError as exc:
            raise ProviderError(f"{self.cloud} could not be reached ({type(exc).__name__}).") from exc
        logger.debug("%s %s %s -> %s in %.3f s", self.slug, method, path, response.status_code,
                     time.monotonic() - started)  # fmt: skip
        if response.is_success:
            self._pace(response)
            return response
        raise self._error(method, path, response)

    @contextmanager
    def stream(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, timeout: httpx.Timeout | None = None
    ) -> Iterator[httpx.Response]:
        """A 2xx response whose body is read as it arrives (a log stream that never ends by itself);
        `timeout` replaces the client's for this call (a short read timeout: stop once it falls silent).
        Errors are mapped as for `send`; a timeout or a cut while reading is the caller's to handle."""
        wait_out_backoff(self.cloud, self.slug)
        request = self._client.build_request(
            method, path, params=_clean(params), timeout=timeout if timeout is not None else self._client.timeout
        )
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise ProviderError(f"{self.cloud} did not answer {method} {path} in time.") from exc
        except httpx.TransportError as exc:
            raise ProviderError(f"{self.cloud} could not be reached ({type(exc).__name__}).") from exc
        try:
            if not response.is_success:
                response.read()
                raise self._error(method, path, response)
            self._pace(response)
            yield response
        finally:
            response.close()

    def _pace(self, response: httpx.Response) -> None:
        wait = self.pace(response) if self.pace else None
        if wait:
            back_off(self.slug, wait)

    # --- errors -------------------------------------------------------------------------------
    def _error(self, method: str, path: str, response: httpx.Response) -> ProviderError:
        status = response.status_code
        said = message_of(response)
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if status == 429:
            back_off(self.slug, retry_after if retry_after is not None else self.backoff_seconds)
        shared = status_error(self.cloud, method, path, status, said, retry_after=retry_after)
        if shared is not None:
            return shared
        refused = self.refusal(response, said) if self.refusal else None
        return refused or ProviderError(f"{self.cloud} refused {method} {path} ({status}): {said}", permanent=True)


def status_error(
    cloud: str, method: str, path: str, status: int, said: str, *, retry_after: float | None = None
) -> ProviderError | None:
    """What an error status means for every cloud (the list at the top of this module); None for the
    4xx that only the cloud's own shape explains (its refusal hook, else a permanent refusal). A client
    other than CloudApi (pydo, for DigitalOcean) maps its answers through this too."""
    if status == 429:
        return ProviderError(f"{cloud} is rate limiting us (429): {said}", retry_after=retry_after)
    if status in (401, 403):
        return ProviderError(f"{cloud} refused the API key ({status}): {said}", permanent=True)
    if status == 404:
        return CloudNotFound(f"{cloud} has no such thing ({method} {path}): {said}", permanent=True)
    if status >= 500:
        return ProviderError(f"{cloud} failed ({status}) on {method} {path}: {said}")
    return None


def back_off(slug: str, seconds: float) -> None:
    """No call of provider `slug` leaves this platform for `seconds` (bounded), in any process."""
    seconds = min(max(seconds, 1.0), MAX_RETRY_AFTER_SECONDS)
    cache.set(_backoff_key(slug), time.time() + seconds, timeout=int(seconds) + 1)


def wait_out_backoff(cloud: str, slug: str) -> None:
    """A retryable ProviderError while provider `slug` is backing off."""
    until = cache.get(_backoff_key(slug))
    if until is not None and (left := until - time.time()) > 0:
        raise ProviderError(f"{cloud} asked us to slow down; next call in {left:.0f} s.", retry_after=left)


def _backoff_key(slug: str) -> str:
    return f"cloud-backoff:{slug}"


def message_of(response: httpx.Response) -> str:
    """The cloud's own words: a JSON error field where there is one, else the text, shortened."""
    return message_in(response.text, fallback=response.reason_phrase)


def message_in(text: str, *, fallback: str = "") -> str:
    """The cloud's own words in an error body: a JSON error field where there is one, else the text
    (`fallback` for an empty body), shortened."""
    text = text.strip()
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    found = _message_in(body)
    return (found if found is not None else text or fallback)[:MAX_MESSAGE]


def _message_in(body: Any) -> str | None:
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        parts = [m for m in (_message_in(item) for item in body) if m]
        return "; ".join(parts) if parts else None
    if isinstance(body, dict):
        for name in MESSAGE_FIELDS:
            if name in body and (found := _message_in(body[name])):
                return found
    return None


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Query parameters without the unset ones (httpx would send `name=` for None)."""
    return None if params is None else {k: v for k, v in params.items() if v is not None}
