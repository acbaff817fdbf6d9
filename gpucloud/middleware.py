"""Pages call the same services as the API; this turns their ApiErrors into the matching
HTML error page (404 for another tenant's object, 403 for a missing role) instead of a 500."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.views import defaults

from gpucloud.core.errors import ApiError, NotFound, PermissionDenied


class ApiErrorPageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, NotFound):
            return defaults.page_not_found(request, Http404(exception.message))
        if isinstance(exception, PermissionDenied):
            return defaults.permission_denied(request, DjangoPermissionDenied(exception.message))
        if isinstance(exception, ApiError):
            response = defaults.bad_request(request, exception)
            response.status_code = exception.status
            return response
        return None
