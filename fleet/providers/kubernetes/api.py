"""The one seam to a Kubernetes API server.

Every request goes through `KubeApi.call` (or `KubeApi.stream_lines`), which sets an explicit
timeout and turns the client's failures into `KubeApiError`, a ProviderError that remembers the
HTTP status so callers can treat 404 and 409 as the idempotent outcomes they are:

- 401/403 (credentials, RBAC), 400/422 (invalid object), 404: permanent.
- 409 (already exists): not permanent; creators treat it as success.
- 429, 5xx, no response at all (connection refused, timeout, TLS): retryable.

Retry policy: urllib3 retries connection failures (the request never left) twice; anything that
reached the server is not retried here, the platform's tasks retry with backoff.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any, TypeVar

import pydantic
import urllib3
import yaml
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException, OpenApiException
from kubernetes.config.config_exception import ConfigException

from fleet.providers.base import ProviderError

T = TypeVar("T")
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 422})
RETRY_POLICY = urllib3.Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0.2)


class KubeApiError(ProviderError):
    """A failed API call; `status` is the HTTP status, 0 when no response came back."""

    def __init__(self, message: str, *, status: int, permanent: bool = False) -> None:
        super().__init__(message, permanent=permanent)
        self.status = status


class KubeApi:
    """A lazily connected client for one provider config (see `_configuration` for the keys)."""

    def __init__(self, config: dict[str, Any], *, timeout: float, follow_timeout: float) -> None:
        self._config = config
        self.timeout = timeout
        self.follow_timeout = follow_timeout

    @cached_property
    def api_client(self) -> client.ApiClient:
        return client.ApiClient(_configuration(self._config))

    @cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @cached_property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`method(*args, **kwargs)` with the request timeout set; failures become KubeApiError."""
        with mapped_errors(_name(method)):
            return method(*args, _request_timeout=self.timeout, **kwargs)

    def stream_lines(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[str]:
        """Lines of a streamed response (e.g. logs with follow=True) as they arrive. Ends when the
        server closes the stream or sends nothing for `follow_timeout` seconds."""
        with mapped_errors(_name(method)):
            response = method(
                *args, _preload_content=False, _request_timeout=(self.timeout, self.follow_timeout), **kwargs
            )
        try:
            with mapped_errors(_name(method)):
                for raw in response:
                    yield raw.decode("utf-8", "replace").rstrip("\r\n")
        except KubeApiError as exc:
            if not isinstance(exc.__cause__, urllib3.exceptions.ReadTimeoutError):
                raise
        finally:
            response.release_conn()

    def close(self) -> None:
        if "api_client" in self.__dict__:
            self.api_client.close()


@contextmanager
def mapped_errors(operation: str) -> Iterator[None]:
    """Re-raise the kubernetes client's, urllib3's and pydantic's errors as KubeApiError."""
    try:
        yield
    except ApiException as exc:
        raise _api_error(exc, operation) from exc
    except urllib3.exceptions.HTTPError as exc:
        raise KubeApiError(f"Kubernetes API unreachable ({operation}): {exc}", status=0) from exc
    except pydantic.ValidationError as exc:
        raise KubeApiError(f"Kubernetes API sent unexpected data ({operation}): {exc}", status=0) from exc
    except OpenApiException as exc:  # the client refused our arguments before sending
        raise KubeApiError(f"Invalid Kubernetes API request ({operation}): {exc}", status=0, permanent=True) from exc


def _api_error(exc: ApiException, operation: str) -> KubeApiError:
    status = int(exc.status or 0)
    message = f"Kubernetes API {status} {exc.reason or ''} ({operation}): {_status_message(exc.body)}".strip()
    return KubeApiError(message, status=status, permanent=status in PERMANENT_STATUSES)


def _status_message(body: Any) -> str:
    """The `message` of a Status response body, or the body itself, shortened."""
    try:
        message = json.loads(body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        message = body or ""
    return str(message)[:500]


def _configuration(config: dict[str, Any]) -> client.Configuration:
    """Connection from the config: `host` (+ a bearer token, `verify_ssl`) directly, `in_cluster:
    true` (the pod's service account), or a kubeconfig (`kubeconfig` path, default $KUBECONFIG or
    ~/.kube/config, and optional `context`). The token is the provider's sealed `api_key` (what the
    admin's API key field stores, or GPUCLOUD_PROVIDER_<SLUG>_API_KEY), else `token` from the plain
    config. Unusable settings are a permanent ProviderError."""
    configuration = client.Configuration(retries=RETRY_POLICY)
    try:
        if config.get("host"):
            configuration.host = str(config["host"]).rstrip("/")
            configuration.verify_ssl = bool(config.get("verify_ssl", True))
            token = config.get("api_key") or config.get("token")
            if token:
                configuration.api_key = {"authorization": f"Bearer {token}"}
        elif config.get("in_cluster"):
            kube_config.load_incluster_config(client_configuration=configuration)
        else:
            kube_config.load_kube_config(
                config_file=config.get("kubeconfig"),
                context=config.get("context"),
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError, ValueError, yaml.YAMLError) as exc:
        raise ProviderError(f"Cannot connect to the Kubernetes cluster: {exc}", permanent=True) from exc
    return configuration


def _name(method: Callable[..., Any]) -> str:
    return str(getattr(method, "__name__", "request"))
