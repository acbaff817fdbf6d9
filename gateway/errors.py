"""Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}}, with the statuses the
OpenAI SDK maps to its exception classes."""

from __future__ import annotations

import json


class GatewayError(Exception):
    def __init__(
        self, status: int, message: str, *, type_: str, code: str | None = None, param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        return json.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        ).encode()


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, type_="invalid_request_error", param=param)


def unauthorized(message: str) -> GatewayError:
    return GatewayError(401, message, type_="invalid_request_error", code="invalid_api_key")


def forbidden(message: str) -> GatewayError:
    return GatewayError(403, message, type_="invalid_request_error", code="permission_denied")


def not_found(message: str, param: str | None = "model") -> GatewayError:
    return GatewayError(404, message, type_="invalid_request_error", code="model_not_found", param=param)


def unavailable(message: str) -> GatewayError:
    return GatewayError(503, message, type_="server_error", code="model_not_ready", headers={"Retry-After": "5"})


def upstream_failed(message: str, *, timeout: bool = False) -> GatewayError:
    return GatewayError(504 if timeout else 502, message, type_="server_error", code="upstream_error")
