"""DigitalOcean's API through pydo, its official client, with answers mapped to the driver contract the
way every cloud's are (fleet/providers/cloud/api.py: `status_error`, the 429 backoff shared through
the cache, `message_in`):

- pydo is pointed at the configured base URL (its `endpoint`); azure-core's retry policy, on by default
  (up to 10 retries with backoff inside one call, 429s and 5xx included), is off: a retry is the
  platform's decision (the task's backoff, the provisioner's next offer), taken on our ProviderError,
  never hidden inside a call;
- every call has the configured connect and read timeouts (azure-core's own are 300 s each), and no
  proxy is read from the environment (as CloudApi's trust_env=False);
- each call is logged as one DEBUG line, as CloudApi does, in place of azure-core's INFO block of
  headers per request (the key itself is redacted there too, but a worker's log would be mostly that);
- azure-core refuses a bearer token over plain http; the operator's base URL says which it is (an
  http URL is a local proxy or the test cloud), and only then is plain http allowed;
- 429: DigitalOcean's Retry-After where it sent one; else, when `ratelimit-remaining` is 0, until
  `ratelimit-reset` (when the oldest counted request leaves the window, epoch seconds); else
  `backoff_seconds`;
- 422 {"id": "unprocessable_entity", "message": "Size is not available in this region."} (or
  "Region is not available"): no capacity; a 422 to a DELETE (the droplet busy with another event, a
  deletion under way): retryable, the next round asks again; any other 4xx: permanent, in DigitalOcean's
  words.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import pydo
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import RetryPolicy, SansIOHTTPPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpResponse

from fleet.providers.base import ProviderError
from fleet.providers.cloud.api import (
    MAX_RETRY_AFTER_SECONDS,
    back_off,
    message_in,
    retry_after_seconds,
    status_error,
    wait_out_backoff,
)
from fleet.providers.cloud.options import CloudOptions

logger = logging.getLogger(__name__)

CLOUD = "DigitalOcean"
DEFAULT_BASE_URL = "https://api.digitalocean.com"
MAX_PAGES = 100  # 20,000 items at 200 a page: past that, a pagination loop rather than a listing
NO_CAPACITY = re.compile(r"(size|region) is not available", re.IGNORECASE)

Json = dict[str, Any]


class DigitalOceanApi:
    """The calls the driver makes, each one request (a listing, one request per page)."""

    def __init__(self, options: CloudOptions, *, slug: str, per_page: int = 200) -> None:
        self.options = options
        self.slug = slug
        self.per_page = per_page
        transport = RequestsTransport(
            use_env_settings=False,
            connection_timeout=options.connect_timeout_seconds,
            read_timeout=options.timeout_seconds,
        )
        self.client = pydo.Client(
            token=options.api_key,
            endpoint=options.base_url,
            transport=transport,
            retry_policy=RetryPolicy.no_retries(),
            http_logging_policy=SansIOHTTPPolicy(),  # a policy that does nothing: our own line below
        )
        self._https_only = options.base_url.startswith("https://")

    # --- the calls ------------------------------------------------------------------------------
    def sizes(self) -> list[Json]:
        return self._listing("sizes", "GET /v2/sizes", self.client.sizes.list)

    def droplets(self, *, tag: str) -> list[Json]:
        """Every droplet carrying `tag`, GPU droplets included. DigitalOcean's lists leave GPU droplets
        out unless asked for `type=gpus`, which a `tag_name` filter may not be combined with, and its
        description does not say whether the tag filter alone lists them: both are asked, and the GPU
        list is filtered by the tag here. A leaked GPU droplet bills hundreds of dollars a day."""
        tagged = self._listing("droplets", "GET /v2/droplets", self.client.droplets.list, tag_name=tag)
        gpus = self._listing("droplets", "GET /v2/droplets", self.client.droplets.list, type="gpus")
        found = {d["id"]: d for d in [*tagged, *(g for g in gpus if tag in (g.get("tags") or ()))]}
        return list(found.values())

    def droplet(self, droplet_id: int) -> Json:
        """The droplet; CloudNotFound once it is gone."""
        return dict(self._call("GET /v2/droplets/{id}", self.client.droplets.get, droplet_id=droplet_id)["droplet"])

    def droplet_create(self, body: Json) -> Json:
        return dict(self._call("POST /v2/droplets", self.client.droplets.create, body=body)["droplet"])

    def droplet_delete(self, droplet_id: int) -> None:
        """Accepted (204); CloudNotFound when it is already gone."""
        self._call("DELETE /v2/droplets/{id}", self.client.droplets.destroy, droplet_id=droplet_id)

    def tag_create(self, name: str) -> None:
        self._call("POST /v2/tags", self.client.tags.create, body={"name": name})

    def firewalls(self) -> list[Json]:
        return self._listing("firewalls", "GET /v2/firewalls", self.client.firewalls.list)

    def firewall_create(self, body: Json) -> Json:
        return dict(self._call("POST /v2/firewalls", self.client.firewalls.create, body=body)["firewall"])

    def firewall_delete(self, firewall_id: str) -> None:
        self._call("DELETE /v2/firewalls/{id}", self.client.firewalls.delete, firewall_id=firewall_id)

    def firewall_update(self, firewall_id: str, body: Json) -> Json:
        answer = self._call("PUT /v2/firewalls/{id}", self.client.firewalls.update, firewall_id=firewall_id, body=body)
        return dict(answer["firewall"])

    def volumes(self, *, name: str | None = None) -> list[Json]:
        """Every volume (DigitalOcean's listing filters by name or region, not by tag), or those named `name`."""
        named = {"name": name} if name else {}
        return self._listing("volumes", "GET /v2/volumes", self.client.volumes.list, **named)

    def volume(self, volume_id: str) -> Json:
        """The volume; CloudNotFound once it is gone."""
        return dict(self._call("GET /v2/volumes/{id}", self.client.volumes.get, volume_id=volume_id)["volume"])

    def volume_create(self, body: Json) -> Json:
        return dict(self._call("POST /v2/volumes", self.client.volumes.create, body=body)["volume"])

    def volume_delete(self, volume_id: str) -> None:
        """Gone (204); CloudNotFound when it already was."""
        self._call("DELETE /v2/volumes/{id}", self.client.volumes.delete, volume_id=volume_id)

    def volume_action(self, volume_id: str, body: Json) -> Json:
        """An action on the volume (resize), accepted (202)."""
        answer = self._call("POST /v2/volumes/{id}/actions", self.client.volume_actions.post_by_id,
                            volume_id=volume_id, body=body)  # fmt: skip
        return dict(answer["action"])

    # --- one request ------------------------------------------------------------------------------
    def _call(self, what: str, operation: Callable[..., Any], **arguments: Any) -> Any:
        """The answer's JSON (None for an empty body); a ProviderError for anything but 2xx."""
        wait_out_backoff(CLOUD, self.slug)
        started = time.monotonic()
        try:
            response, body = operation(**arguments, cls=_answer, enforce_https=self._https_only)
        except HttpResponseError as exc:  # a status the operation does not expect (pydo raises)
            if exc.response is None:  # the body broke off mid-read
                raise ProviderError(f"{CLOUD} cut its answer to {what} short.") from exc
            raise self._error(cast(HttpResponse, exc.response)) from exc  # pydo sends azure.core.rest requests
        except (ServiceRequestTimeoutError, ServiceResponseTimeoutError) as exc:
            raise ProviderError(f"{CLOUD} did not answer {what} in time.") from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise ProviderError(f"{CLOUD} could not be reached ({type(exc).__name__}).") from exc
        except ValueError as exc:  # a body that is not JSON (json.JSONDecodeError)
            raise ProviderError(f"{CLOUD} answered {what} with a body that is not JSON.") from exc
        logger.debug("%s %s -> %s in %.3f s", self.slug, what, response.status_code, time.monotonic() - started)
        if response.status_code >= 300:  # one it expects and hands back as a body (404 on a droplet)
            raise self._error(response)
        return body

    def _listing(self, key: str, what: str, operation: Callable[..., Any], **filters: Any) -> list[Json]:
        """Every item under `key`, page after page while DigitalOcean's links.pages.next names one."""
        items: list[Json] = []
        page = 1
        for _ in range(MAX_PAGES):
            body = self._call(what, operation, per_page=self.per_page, page=page, **filters) or {}
            items += body.get(key) or []
            following = _next_page(body, page)
            if following is None:
                return items
            page = following
        raise ProviderError(f"{CLOUD} listed {key} over more than {MAX_PAGES} pages.")

    def _error(self, response: HttpResponse) -> ProviderError:
        method, path, status = response.request.method, urlsplit(response.request.url).path, response.status_code
        text = response.text()
        said = message_in(text, fallback=response.reason or "")
        wait = retry_after_seconds(response.headers.get("Retry-After")) if status == 429 else None
        if status == 429:
            wait = wait if wait is not None else _until_reset(response.headers)
            back_off(self.slug, wait if wait is not None else self.options.backoff_seconds)
        shared = status_error(CLOUD, method, path, status, said, retry_after=wait)
        if shared is not None:
            return shared
        if status == 422 and _error_id(text) == "unprocessable_entity" and NO_CAPACITY.search(said):
            return ProviderError(f"{CLOUD} has no capacity for it: {said}", no_capacity=True)
        if status == 422 and method == "DELETE":
            return ProviderError(f"{CLOUD} did not take {method} {path} now ({status}): {said}")
        return ProviderError(f"{CLOUD} refused {method} {path} ({status}): {said}", permanent=True)


def _answer(pipeline_response: Any, body: Any, headers: Any) -> tuple[HttpResponse, Any]:
    """pydo's `cls` hook: the raw response with the decoded body, so that the status is ours to read."""
    return pipeline_response.http_response, body


def _next_page(body: Json, page: int) -> int | None:
    """The page DigitalOcean's `next` link names (always past `page`), or None on the last page."""
    link = ((body.get("links") or {}).get("pages") or {}).get("next")
    if not link:
        return None
    named = parse_qs(urlsplit(str(link)).query).get("page", [""])[0]
    return int(named) if named.isdigit() and int(named) > page else page + 1


def _until_reset(headers: Mapping[str, str]) -> float | None:
    """Seconds until the rate limit's window frees a request, when it is used up (ratelimit-* headers)."""
    remaining, reset = headers.get("ratelimit-remaining"), headers.get("ratelimit-reset")
    if remaining != "0" or not reset or not reset.isdigit():
        return None
    return min(max(int(reset) - time.time(), 0.0), MAX_RETRY_AFTER_SECONDS)


def _error_id(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return ""
    return str(body.get("id", "")) if isinstance(body, dict) else ""
