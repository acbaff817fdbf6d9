"""RunPod's REST API (v2) through the clouds' shared client (cloud/api.py), with RunPod's own shapes:

- No capacity: `POST /v2/pods` answers 400 with an RFC 9457 problem whose only word on the matter is a
  human `detail` ("capacity exhaustion currently carries no machine-readable code of its own", says the
  description). The same 400 also means "the request breaks a cross-field rule", which no retry can fix;
  so a 400 is no capacity only when its detail says so, in the words RunPod uses, and it lists no
  `errors` (rule violations do). Any other 4xx stays permanent (402: no balance; 409: a cluster's pod).
- Rate limits: every answer carries `RateLimit: "minute";r=<left>;t=<seconds to reset>, ...` (the IETF
  ratelimit-headers draft). A window with nothing left means the next call would be a 429: the client
  waits for that window's reset, shared by every process (cloud/api.py), without spending the call.
"""

from __future__ import annotations

import re

import httpx

from fleet.providers.base import ProviderError
from fleet.providers.cloud.api import CloudApi
from fleet.providers.runpod.options import CLOUD, RunPodOptions

NO_CAPACITY = re.compile(
    r"no longer any instances available"
    r"|no (?:instances|machines|gpus|hosts) (?:are )?available"
    r"|no available (?:data ?center|machine|gpu|host)"
    r"|could not be placed"
    r"|does not have the resources"
    r"|(?:insufficient|out of|no) capacity",
    re.IGNORECASE,
)
_WINDOW = re.compile(r'"?(?P<name>[^";,\s]+)"?\s*(?P<params>(?:;\s*[a-z]+=[^;,]*)*)')
_PARAM = re.compile(r";\s*(?P<key>[a-z]+)=(?P<value>[^;,]*)")


def runpod_api(options: RunPodOptions, *, slug: str, transport: httpx.BaseTransport | None = None) -> CloudApi:
    cloud = options.cloud
    return CloudApi(
        cloud=CLOUD,
        slug=slug,
        base_url=cloud.base_url,
        headers={"Authorization": f"Bearer {cloud.api_key}", "Accept": "application/json"},
        timeout=cloud.timeout,
        backoff_seconds=cloud.backoff_seconds,
        refusal=refusal,
        pace=pace,
        transport=transport,
    )


def refusal(response: httpx.Response, said: str) -> ProviderError | None:
    """RunPod's no-capacity 400; None for anything else (the shared client makes it permanent)."""
    if response.status_code != 400 or not NO_CAPACITY.search(said) or _lists_errors(response):
        return None
    return ProviderError(f"{CLOUD} has no capacity for this pod right now: {said}", no_capacity=True)


def pace(response: httpx.Response) -> float | None:
    """Seconds until the first exhausted window of the `RateLimit` header resets; None if none is."""
    waits = [reset for left, reset in rate_windows(response.headers.get("RateLimit", "")) if left <= 0]
    return max(waits) if waits else None


def rate_windows(header: str) -> list[tuple[int, float]]:
    """(requests left, seconds to reset) of each window of a `RateLimit` header; malformed ones skipped."""
    windows = []
    for member in header.split(","):
        match = _WINDOW.match(member.strip())
        if not match:
            continue
        params = {m["key"]: m["value"].strip() for m in _PARAM.finditer(match["params"])}
        try:
            windows.append((int(params["r"]), float(params["t"])))
        except (KeyError, ValueError):
            continue
    return windows


def _lists_errors(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and bool(body.get("errors"))
