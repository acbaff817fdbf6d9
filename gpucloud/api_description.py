"""Every status an operation of the management API answers, written into its OpenAPI description
with the one error shape (gpucloud/core/errors.py), so the description is true for clients.

What every operation may answer comes from how the API works (gpucloud/api.py's handlers):
- 401: no key, or a wrong, malformed or revoked one (every operation needs auth);
- 403: a scoped or deployment key on the management API, a role that may not do it, a failed CSRF check;
- 404: a path naming nothing the caller's organization has (operations with path parameters);
- 422: input its schema refuses (operations with a body or query parameters, or non-string path ones),
  or text with a NUL character (gpucloud/middleware.py, gpucloud/core/schemas.py);
- 413: a body over the upload limit (operations with a body).
The rest each view declares with `@answers(...)` (gpucloud/core/errors.py): 400 for a request its
schema admits but the service refuses, 402, 409, 503.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from ninja import NinjaAPI

ERROR_SCHEMA_NAME = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR_SCHEMA_NAME,
    "type": "object",
    "description": "Every error of the management API: a type a program can branch on, a message a person reads, "
    "and the input field at fault when there is one.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "examples": ["invalid_request_error", "not_found_error"]},
                "message": {"type": "string"},
                "param": {"type": ["string", "null"], "description": "The input field at fault"},
            },
            "required": ["type", "message"],
        }
    },
    "required": ["error"],
}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def declared_statuses(api: NinjaAPI) -> dict[str, frozenset[int]]:
    """operationId -> the error statuses its view declares with @answers."""
    declared: dict[str, frozenset[int]] = {}
    for _prefix, router in api._routers:
        for path_view in router.path_operations.values():
            for operation in path_view.operations:
                statuses: frozenset[int] = getattr(operation.view_func, "error_statuses", frozenset())
                declared[api.get_openapi_operation_id(operation)] = statuses
    return declared


def error_statuses_of(operation: dict[str, Any], declared: frozenset[int]) -> set[int]:
    statuses = {401, 403, *declared}
    parameters = operation.get("parameters", [])
    path = [p for p in parameters if p.get("in") == "path"]
    if path:
        statuses.add(404)
    typed_path = any(p.get("schema", {}).get("type") not in (None, "string") for p in path)
    if "requestBody" in operation or any(p.get("in") == "query" for p in parameters) or typed_path:
        statuses.add(422)
    if "requestBody" in operation:
        statuses.add(413)
    return statuses


def document_errors(schema: dict[str, Any], api: NinjaAPI) -> dict[str, Any]:
    """Add each operation's error statuses to `schema` (in place) and return it. An operation that
    already describes its errors (the per-deployment chat route, served by the gateway) is left as is."""
    declared = declared_statuses(api)
    schema.setdefault("components", {}).setdefault("schemas", {})[ERROR_SCHEMA_NAME] = ERROR_SCHEMA
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMA_NAME}"}
    for methods in schema.get("paths", {}).values():
        for method, operation in methods.items():
            if method not in _METHODS or any(int(code) >= 400 for code in operation["responses"]):
                continue
            for status in sorted(
                error_statuses_of(operation, declared.get(operation.get("operationId", ""), frozenset()))
            ):
                operation["responses"][status] = {  # ninja keys responses by int
                    "description": HTTPStatus(status).phrase,
                    "content": {"application/json": {"schema": reference}},
                }
    return schema


# A string that holds a NUL character: no id, name or setting here does (PostgreSQL's text cannot),
# and the API refuses one with 422 (gpucloud/middleware.py, gpucloud/core/schemas.py).
NO_NUL = {"not": {"type": "string", "pattern": "\\u0000"}}


def forbid_nul_text(schema: dict[str, Any]) -> dict[str, Any]:
    """Say in `schema` (in place) that the text of request bodies and query parameters holds no NUL
    character, as the API enforces; the gateway's OpenAI-shaped operations are left as OpenAI has them."""
    components = schema.get("components", {}).get("schemas", {})
    seen: set[str] = set()
    pending: list[dict[str, Any]] = []
    for path, methods in schema.get("paths", {}).items():
        if path.startswith("/v1/"):
            continue
        for method, operation in methods.items():
            if method not in _METHODS:
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and _may_be_text(parameter.get("schema", {})):
                    parameter["schema"] = {**parameter["schema"], **NO_NUL}
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if "schema" in body:
                pending.append(body["schema"])
    while pending:
        node = pending.pop()
        name = node.get("$ref", "").rsplit("/", 1)[-1]
        if name:
            if name in seen or name not in components:
                continue
            seen.add(name)
            node = components[name]
        for key, property_schema in node.get("properties", {}).items():
            if _may_be_text(property_schema):
                node["properties"][key] = {**property_schema, **NO_NUL}
            pending.append(property_schema)
            pending.extend(property_schema.get("anyOf", []))
            if isinstance(property_schema.get("items"), dict):
                pending.append(property_schema["items"])
    return schema


def _may_be_text(schema: dict[str, Any]) -> bool:
    kinds = [schema.get("type")] + [option.get("type") for option in schema.get("anyOf", [])]
    return "string" in kinds and "enum" not in schema and "format" not in schema and "const" not in schema
