"""The OpenAPI description of what the gateway serves at /v1 (merged into /api/v1/openapi.json by
gpucloud/api.py): every status each route answers, with OpenAI's error shape, and OpenAI's own
request schemas (gateway/openai_requests.json: what gateway/validation.py enforces).

Statuses, where they come from: 400 a request OpenAI's schema refuses, a catalog name of several
deployments (`model_ambiguous`), a model of another kind, a bad X-Wait-For-Ready, a bad or sizeless
Hugging Face id; 401 no or a wrong key; 402 a cold deployment's wake cannot be paid; 403 a viewer's
key, a scoped key not granted the deployment, a Hugging Face model the operator does not allow; 404
no such model or deployment; 413 a body over the route's limit (gateway/bodies.py); 422 an engine
refusing the request; 429 the deployment's concurrency limit; 500 a failure of the gateway; 502 the
engine failed; 503 no ready replica, the deployment stopped while starting, no spot GPU a Hugging
Face model fits, or the process's budget for large bodies is full; 504 the engine timed out.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from gateway import bodies

PREFIX = "OpenAI_"  # OpenAI's schema names, kept apart from the management API's own
ERROR = "GatewayError"
WAKING = "GatewayWaking"
_REQUESTS = {
    "/v1/chat/completions": "CreateChatCompletionRequest",
    "/v1/completions": "CreateCompletionRequest",
    "/v1/embeddings": "CreateEmbeddingRequest",
}
_STATUS_TEXT = {
    400: "The request is invalid: OpenAI's request schema refuses it (`param` names the field), `model` is "
    "missing or names several deployments (`model_ambiguous`: send a deployment id), the model serves "
    "another endpoint, or `model` has a '/' but is no Hugging Face id (`org/name`) vLLM serves, or has no "
    "size in its name (like 7B) to choose a GPU by.",
    401: "No API key, or a wrong, revoked or expired one.",
    402: "Waking the cold deployment (or starting a Hugging Face model) needs credit (`insufficient_balance`).",
    403: "The key may read but not invoke (a viewer's), or is not granted this deployment, or the operator does not "
    "allow this Hugging Face model (`hf_model_not_allowed`: GPUCLOUD_HF_MODELS).",
    404: "No such model or deployment for this key.",
    413: "The request body is larger than this route's limit, {limit}: answered from Content-Length before "
    "the body is read, or as soon as a body without one passes the limit; nothing is forwarded or metered.",
    422: "The model's engine refused the request.",
    429: "The deployment's concurrency limit is reached; retry after Retry-After.",
    500: "The gateway failed to handle the request.",
    502: "The model's engine failed or could not be reached.",
    503: "No replica is ready (or the deployment stopped while starting), no spot GPU a Hugging Face model fits "
    "is offered (`no_capacity`), the organization's last deployment of that model failed (`deployment_failed`: "
    "delete it to try again), or this gateway process already "
    "holds its budget of large request bodies (over 1 MiB) and this one waited 5 s for room "
    "(`server_busy`); retry after Retry-After.",
    504: "The model's engine did not answer in time.",
}
INFERENCE_ERRORS = (400, 401, 402, 403, 404, 413, 422, 429, 500, 502, 503, 504)
_RETRY_AFTER = {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}
_LOCATION = {"description": "GET it (with the key) to see the deployment's availability", "schema": {"type": "string"}}


def _request_schemas() -> dict[str, Any]:
    defs = json.loads(Path(__file__).with_name("openai_requests.json").read_text())["$defs"]
    text = json.dumps(defs).replace('"#/$defs/', f'"#/components/schemas/{PREFIX}')
    return {f"{PREFIX}{name}": schema for name, schema in json.loads(text).items()}


def _error_schema() -> dict[str, Any]:
    nullable_string = {"type": ["string", "null"]}
    return {
        "type": "object",
        "description": "OpenAI's error shape",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {
                        "type": "string",
                        "description": "invalid_request_error, insufficient_quota, server_error",
                    },
                    "param": nullable_string,
                    "code": nullable_string,
                },
            }
        },
    }


def _waking_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "202 (reference/001): the deployment is starting; retry after Retry-After or poll Location",
        "required": ["status", "message", "type", "estimated_ready_seconds", "deployment_id"],
        "properties": {
            "status": {"type": "string", "enum": ["deploying"]},
            "message": {"type": "string"},
            "type": {"type": "string", "enum": ["model_deploying"]},
            "estimated_ready_seconds": {"type": "integer", "minimum": 1},
            "deployment_id": {"type": "string"},
        },
    }


def components() -> dict[str, Any]:
    return {**_request_schemas(), ERROR: _error_schema(), WAKING: _waking_schema()}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def limit_text(path: str) -> str:
    limit = bodies.LIMITS[path]
    return f"{limit // bodies.MiB} MiB ({limit:,} bytes)"


def _errors(statuses: tuple[int, ...], path: str | None = None) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status in statuses:
        answer: dict[str, Any] = {
            "description": _STATUS_TEXT[status].format(limit=limit_text(path)) if path else _STATUS_TEXT[status],
            "content": {"application/json": {"schema": _ref(ERROR)}},
        }
        if status in (429, 503):
            answer["headers"] = {"Retry-After": _RETRY_AFTER}
        answers[str(status)] = answer
    return answers


def inference_responses(path: str, streams: bool) -> dict[str, Any]:
    """What an inference route answers: its JSON (or SSE), 202 while a cold deployment wakes, errors."""
    ok: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        ok["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "200": {"description": "OpenAI's response" + (" (SSE chunks when `stream` is true)" if streams else ""),
                "content": ok},
        "202": {
            "description": "The deployment is cold or starting and this request is not held: it sent "
            "`Prefer: respond-async`, its wake is expected to take longer than the deployment's "
            "`cold_start_wait_seconds`, or its X-Wait-For-Ready ran out.",
            "headers": {"Retry-After": _RETRY_AFTER, "Location": _LOCATION},
            "content": {"application/json": {"schema": _ref(WAKING)}},
        },
        **_errors(INFERENCE_ERRORS, path),
    }  # fmt: skip


HOLD_HEADERS = [
    {
        "in": "header",
        "name": "Prefer",
        "required": False,
        "description": "`respond-async`: answer 202 at once while a cold deployment wakes, instead of holding the "
        "request until it is ready",
        "schema": {"type": "string"},
    },
    {
        "in": "header",
        "name": "X-Wait-For-Ready",
        "required": False,
        "description": "Hold the request at most this many seconds for a starting deployment (0: answer 202 at "
        "once); without it, a cold deployment's `cold_start_wait_seconds` applies",
        "schema": {"type": "number", "minimum": 0, "maximum": 600},
    },
]
# On /v1 the gateway needs `model` (the per-deployment routes name the deployment in their path).
_MODEL_REQUIRED = {
    "required": ["model"],
    "properties": {
        "model": {
            "type": "string",
            "minLength": 1,
            "description": "A deployment id, a catalog name, or a Hugging Face id (org/name)",
        }
    },
}
_DESCRIPTION = """\
OpenAI's {what}, served by the gateway. `model` is a deployment id (always exact) or a catalog model's
name when it names exactly one deployment the key may call (several: 400 `model_ambiguous`, naming
their ids). A cold (scaled-to-zero) deployment is woken with its first minute held from the balance;
the request is held until a replica is ready when the wake is expected within the deployment's
`cold_start_wait_seconds` (default 60), else (or with `Prefer: respond-async`) it answers 202 with
Retry-After and Location. A Hugging Face id (`org/name`) the organization has no deployment of, where
the operator allows it (GPUCLOUD_HF_MODELS), is deployed cold on the cheapest spot GPU its size fits
and woken the same way. The request is checked against OpenAI's schema before anything is held,
woken or forwarded. The body may be up to {limit} (413 above). Errors are in OpenAI's shape."""


def _inference_operation(path: str, what: str, streams: bool) -> dict[str, Any]:
    name = _REQUESTS[path]
    return {
        "post": {
            "operationId": f"gateway_{path.removeprefix('/v1/').replace('/', '_')}",
            "tags": ["OpenAI-compatible gateway"],
            "summary": f"OpenAI {what}",
            "description": _DESCRIPTION.format(what=what, limit=limit_text(path)),
            "security": [{"InferenceKeyAuth": []}],
            "parameters": HOLD_HEADERS,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"allOf": [_ref(PREFIX + name), _MODEL_REQUIRED]}}},
            },
            "responses": inference_responses(path, streams),
        }
    }


def _models_operation(one: bool) -> dict[str, Any]:
    entry = {
        "type": "object",
        "required": ["id", "object", "created", "owned_by", "availability", "deployment_id"],
        "properties": {
            "id": {"type": "string", "description": "A deployment id (send it as `model`), or a catalog name"},
            "object": {"type": "string", "enum": ["model"]},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
            "availability": {"type": "string", "enum": ["instant", "deploying", "cold"]},
            "deployment_id": {"type": ["string", "null"], "description": "null: a catalog model not deployed"},
            "catalog_model": {"type": ["string", "null"], "description": "Its catalog name, or the Hugging Face id "
                              "it was deployed from (also accepted as `model`)"},
            "name": {"type": "string"},
            "estimated_ready_seconds": {"type": "integer", "description": "deploying only"},
            "deployment_ids": {
                "type": "array", "items": {"type": "string"},
                "description": "A catalog name looked up that names several deployments: their ids, newest "
                "first (send one as `model`); the best availability among them",
            },
        },
    }  # fmt: skip
    body = entry if one else {
        "type": "object", "required": ["object", "data"],
        "properties": {"object": {"type": "string", "enum": ["list"]}, "data": {"type": "array", "items": entry}},
    }  # fmt: skip
    operation: dict[str, Any] = {
        "operationId": "gateway_models_get" if one else "gateway_models_list",
        "tags": ["OpenAI-compatible gateway"],
        "summary": "One model or deployment, with its availability" if one else "What this key can call",
        "description": "Every deployment the key may call, by id (its catalog model, or the Hugging Face id it "
        "was deployed from, in `catalog_model`), and "
        "catalog models the organization has not deployed that a provider could start now, as `cold` with "
        "`deployment_id: null` (deploy one with POST /api/v1/deployments). Availability: instant, deploying "
        "(with `estimated_ready_seconds`), cold.",
        "security": [{"InferenceKeyAuth": []}],
        "responses": {
            "200": {"description": "OpenAI's Model shape, with availability",
                    "content": {"application/json": {"schema": body}}},
            **_errors((401, 404) if one else (401,)),
        },
    }  # fmt: skip
    if one:
        operation["parameters"] = [{"in": "path", "name": "model", "required": True, "schema": {"type": "string"}}]
    return {"get": operation}


def paths() -> dict[str, Any]:
    return copy.deepcopy({
        "/v1/chat/completions": _inference_operation("/v1/chat/completions", "chat completions", streams=True),
        "/v1/completions": _inference_operation("/v1/completions", "text completions", streams=True),
        "/v1/embeddings": _inference_operation("/v1/embeddings", "embeddings", streams=False),
        "/v1/models": _models_operation(one=False),
        "/v1/models/{model}": _models_operation(one=True),
    })  # fmt: skip


def request_schema_ref(operation: str) -> dict[str, Any]:
    """The OpenAI request schema of a per-deployment route (`chat/completions`, `embeddings`)."""
    return _ref(PREFIX + _REQUESTS[f"/v1/{operation}"])
