"""Pages call the same services as the API; ApiErrorPageMiddleware turns their ApiErrors into the
matching HTML error page (404 for another tenant's object, 403 for a missing role) instead of a 500.
ApiJsonMethodNotAllowedMiddleware keeps the API's 405s in its JSON error shape. NulCharacterMiddleware
refuses NUL characters in URLs and form fields before anything queries the database with them."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseNotFound
from django.views import defaults

from gpucloud.core.errors import ApiError, NotFound, PermissionDenied, error_response


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


class ApiJsonMethodNotAllowedMiddleware:
    """A wrong method on an /api/ route answers the API's JSON error shape, not Django's bare 405
    (django-ninja answers "Method not allowed" as text): the status and Allow header stay, the body
    says which methods the path takes."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 405 or not request.path.startswith("/api/"):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        allowed = sorted(method.strip() for method in response.get("Allow", "").split(",") if method.strip())
        uses = " or ".join(allowed) if allowed else "another method"
        answer = error_response(
            405, "invalid_request_error", f"{request.method} is not allowed on {request.path}; use {uses}."
        )
        answer["Allow"] = ", ".join(allowed)
        return answer


class NulCharacterMiddleware:
    """No id, name or setting here holds a NUL character, and PostgreSQL's text refuses one (the
    query raises), so a request that carries one is answered before any view runs: a path with one
    names nothing (404), a query parameter or form field with one is refused (the API's 422, a
    page's 400). JSON bodies are checked by their schemas (gpucloud/core/schemas.py)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        api = request.path.startswith("/api/")
        if "\x00" in request.path_info:
            text = "Nothing here has a NUL character in its path."
            return error_response(404, "not_found_error", text) if api else HttpResponseNotFound(text)
        fields = [*request.GET.lists()]
        if not api and request.method == "POST" and request.content_type in _FORMS:
            fields += request.POST.lists()
        for name, values in fields:
            if "\x00" in name or any("\x00" in value for value in values):
                text = f"{name}: text may not contain NUL characters."
                if api:
                    return error_response(422, "invalid_request_error", text, name.replace("\x00", ""))
                return HttpResponseBadRequest(text)
        return self.get_response(request)


_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
