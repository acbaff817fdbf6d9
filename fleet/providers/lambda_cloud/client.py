"""Lambda's REST API through the shared cloud client (fleet/providers/cloud/api.py): the operator's key as
a Bearer token, and Lambda's error codes read where they decide what a refusal means.

Lambda answers every failure as {"error": {"code", "message", "suggestion"?}} and asks clients to act on
`code`, never on the wording. Two codes matter beyond the status mapping every cloud shares:
- `instance-operations/launch/insufficient-capacity` (a 400 to a launch): no capacity, try another offer;
- `provider/...`: an upstream outage or exhaustion on Lambda's side (its description's "provider errors"),
  transient, so retried;
- `global/duplicate` (a filesystem of that name exists): `Duplicate`, so a create finds the one made;
- `filesystems/filesystem-in-use` (a delete while a VM, a terminating one say, still mounts it): retried.
"""

from __future__ import annotations

from typing import Any

import httpx

from fleet.providers.base import ProviderError
from fleet.providers.cloud.api import CloudApi
from fleet.providers.lambda_cloud.options import LambdaOptions

NO_CAPACITY = "instance-operations/launch/insufficient-capacity"
UPSTREAM_PREFIX = "provider/"
DUPLICATE = "global/duplicate"
FILESYSTEM_IN_USE = "filesystems/filesystem-in-use"


class Duplicate(ProviderError):
    """Lambda already has a thing of that name."""


def lambda_api(options: LambdaOptions, *, slug: str, transport: httpx.BaseTransport | None = None) -> CloudApi:
    cloud = options.cloud
    return CloudApi(
        cloud="Lambda",
        slug=slug,
        base_url=cloud.base_url,
        headers={"Authorization": f"Bearer {cloud.api_key}", "Accept": "application/json"},
        timeout=cloud.timeout,
        backoff_seconds=cloud.backoff_seconds,
        refusal=refusal,
        transport=transport,
    )


def refusal(response: httpx.Response, said: str) -> ProviderError | None:
    """What a 4xx (other than 401/403/404/429) means, by Lambda's error code; None: permanent."""
    code = error_code(response)
    if code == NO_CAPACITY:
        return ProviderError(f"Lambda has no capacity for this launch: {said}", no_capacity=True)
    if code == DUPLICATE:
        return Duplicate(f"Lambda already has one of that name: {said}", permanent=True)
    if code == FILESYSTEM_IN_USE:
        return ProviderError(f"Lambda's filesystem is still mounted on a VM: {said}")
    if code.startswith(UPSTREAM_PREFIX):
        return ProviderError(f"Lambda's upstream failed ({code}): {said}")
    return None


def error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


def data_of(answer: Any, what: str) -> Any:
    """The `data` of a success answer ({"data": ...}); a retryable error when Lambda sent something else."""
    if not isinstance(answer, dict) or "data" not in answer:
        raise ProviderError(f"Lambda's answer to {what} has no data.")
    return answer["data"]
