"""The management REST API at /api/v1/: one NinjaAPI assembled from each app's router.

Every error leaves through the handlers below in one shape (gpucloud/core/errors.py).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema
from ninja.operation import Operation
from ninja.types import DictStrAny

from accounts.api import keys_router, ssh_keys_router
from accounts.api import router as accounts_router
from accounts.auth import API_AUTH
from billing.api import router as billing_router
from catalog.api import router as catalog_router
from deployments.api.deployments import router as deployments_router
from deployments.api.inference_service import router as inference_service_router
from deployments.api.offers import router as offers_router
from deployments.api.permissions import router as permissions_router
from deployments.api.pods import router as pods_router
from deployments.api.templates import router as templates_router
from deployments.api.volumes import router as volumes_router
from deployments.api.webhooks import router as webhooks_router
from gateway import openapi as gateway_openapi
from gpucloud.api_description import document_errors, forbid_nul_text
from gpucloud.core.errors import ApiError, error_response

logger = logging.getLogger(__name__)

# Operation ids are part of the published description (client generators name their methods after
# them): routers that moved keep the ids their module gave them before (issue 13's layering).
OPERATION_ID_MODULES = {
    "deployments.api.deployments": "deployments.api",
    "deployments.api.permissions": "deployments.permissions_api",
    "deployments.api.webhooks": "webhooks.api",
}


class GpucloudApi(NinjaAPI):
    def get_openapi_schema(
        self, *, path_prefix: str | None = None, path_params: DictStrAny | None = None
    ) -> OpenAPISchema:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        document_errors(schema, self)  # every status each operation answers, with the error shape
        forbid_nul_text(schema)  # text holds no NUL character, as the API enforces
        _with_gateway_operations(schema)  # the gateway's operations, in OpenAI's error shape
        return schema

    def get_openapi_operation_id(self, operation: Operation) -> str:
        module = operation.view_func.__module__
        return f"{OPERATION_ID_MODULES.get(module, module)}_{operation.view_func.__name__}".replace(".", "_")


# The per-deployment routes the gateway serves (gpucloud/asgi.py): their last path segments -> the
# OpenAI operation, and whether it streams.
_PER_DEPLOYMENT = {"/chat/completions": ("chat/completions", True), "/embeddings": ("embeddings", False)}


def _with_gateway_operations(schema: Any) -> None:
    """The gateway's /v1 operations and OpenAI's request schemas join the description; the
    per-deployment routes (documented by deployments/api) take the same request schema, headers
    and statuses as their /v1 twin, since the same gateway code answers them."""
    schema["paths"].update(gateway_openapi.paths())
    schema.setdefault("components", {}).setdefault("schemas", {}).update(gateway_openapi.components())
    for path, operations in schema["paths"].items():
        ending = next((e for e in _PER_DEPLOYMENT if path.startswith("/api/v1/") and path.endswith(e)), None)
        if ending is None or "/deployments/{deployment_id}" not in path:
            continue
        operation, streams = _PER_DEPLOYMENT[ending]
        post = operations["post"]
        post["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": gateway_openapi.request_schema_ref(operation)}},
        }
        post["parameters"] = [*post.get("parameters", []), *gateway_openapi.HOLD_HEADERS]
        post["responses"] = gateway_openapi.inference_responses(f"/v1/{operation}", streams)


api = GpucloudApi(
    title="gpucloud API",
    version="1",
    description=(
        "Management API of gpucloud. Authenticate with an account key "
        "(`Authorization: Bearer gpc_live_...`) or a signed-in browser session (CSRF token required for writes)."
    ),
    auth=API_AUTH,
    urls_namespace="api-v1",
)
api.add_router("", accounts_router)
api.add_router("", keys_router)
api.add_router("", ssh_keys_router)
api.add_router("", catalog_router)
api.add_router("", billing_router)
api.add_router("", deployments_router)
api.add_router("", permissions_router)
api.add_router("", webhooks_router)
api.add_router("", volumes_router)
api.add_router("", pods_router)
api.add_router("", templates_router)
api.add_router("", offers_router)
api.add_router("", inference_service_router)

_HTTP_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


@api.exception_handler(ApiError)
def _api_error(request: HttpRequest, exc: ApiError) -> HttpResponse:
    return error_response(exc.status, exc.type, exc.message, exc.param)


@api.exception_handler(AuthenticationError)
def _missing_credentials(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        401,
        "authentication_error",
        "No API key provided. Send 'Authorization: Bearer <your gpc_live_ key>' or sign in.",
    )


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    first = exc.errors[0] if exc.errors else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "payload", "query", "path")]
    param = ".".join(location) or None
    message = first.get("msg", "Invalid request")
    if param:
        message = f"{param}: {message}"
    return error_response(422, "invalid_request_error", message, param)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    message = str(exc)
    if exc.status_code == 403 and "CSRF" in message:
        message = "CSRF check failed: session-authenticated writes need the X-CSRFToken header."
    return error_response(exc.status_code, _HTTP_ERROR_TYPES.get(exc.status_code, "invalid_request_error"), message)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(404, "not_found_error", str(exc) or "Not found.")


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(413, "invalid_request_error", f"The request body is larger than {limit // 1024} KB.")


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unhandled API error on %s %s", request.method, request.path)
    return error_response(500, "api_error", "Internal error; it has been logged.")
