"""Application errors and the one JSON error shape every API answer uses.

Shape: {"error": {"type": ..., "message": ..., "param": ...}} ("param" only when an
input field is at fault). Services raise these; the API layer turns them into responses.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


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
