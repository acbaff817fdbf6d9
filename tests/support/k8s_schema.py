"""Kubernetes objects checked against the Kubernetes OpenAPI schemas (kubernetes-validate).

`wire(obj)` is the JSON body the kubernetes client sends for a model object: the driver's create
calls serialize their body with `ApiClient.sanitize_for_serialization` (kubernetes.client.api_client
`param_serialize`), and so does this. `schema_check` validates one such body in strict mode, where
a field the schema does not know fails as surely as a wrong type or a missing required field.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
from kubernetes import client

# The newest schemas kubernetes-validate (1.37.0) ships are Kubernetes 1.37, and kubernetes==37.0.1,
# the client the driver builds its objects with, is generated from release-1.37 (its
# Configuration.to_debug_report says so): the objects are checked against the API they are written for.
KUBERNETES_VERSION = "1.37"


def wire(obj: Any) -> dict[str, Any]:
    """The JSON body the kubernetes client sends for `obj`."""
    body = client.ApiClient().sanitize_for_serialization(obj)
    assert isinstance(body, dict)
    return body


def schema_check(manifest: dict[str, Any]) -> str:
    """The Kubernetes version `manifest` was validated against; kubernetes_validate.ValidationError
    when the strict schema of its kind rejects it."""
    return str(kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True))
