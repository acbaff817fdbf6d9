"""Application errors and the one JSON error shape every API answer uses.

Shape: {"error": {"type": ..., "message": ..., "param": ...}} ("param" only when an
input field is at fault). Services raise these; the API layer turns them into responses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.http import JsonResponse

_View = TypeVar("_View", bound=Callable[..., Any])


class ApiError(Exception):
    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(ApiError):
    status = 400


class Unauthenticated(ApiError):
    status = 401
    type = "authentication_error"


class PermissionDenied(ApiError):
    status = 403
    type = "permission_error"


class NotFound(ApiError):
    status = 404
    type = "not_found_error"


class Conflict(ApiError):
    status = 409
    type = "conflict_error"


def error_body(type_: str, message: str, param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": type_, "message": message}
    if param is not None:
        error["param"] = param
    return {"error": error}


def error_response(status: int, type_: str, message: str, param: str | None = None) -> JsonResponse:
    return JsonResponse(error_body(type_, message, param), status=status)


def answers(*statuses: int) -> Callable[[_View], _View]:
    """Declare the error statuses an API view answers besides those every operation may answer
    (401 and 403 from auth, 404 for a path naming nothing, 422 for input its schema refuses):
    gpucloud/api.py writes them into the OpenAPI description with the error shape, so a client
    (and schemathesis, bench/api_conformance.py) knows every status it can get."""

    def declare(view: _View) -> _View:
        view.error_statuses = frozenset(statuses)  # type: ignore[attr-defined]
        return view

    return declare
