"""Platform-level endpoints: health, the favicon at its well-known path, and JSON 404/500 for API paths."""

from __future__ import annotations

from django.contrib.staticfiles.storage import staticfiles_storage
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from django.views.defaults import page_not_found
from django.views.defaults import server_error as html_server_error

from gpucloud import health
from gpucloud.core.errors import error_response

API_PREFIXES = ("/api/", "/v1/")


@require_GET
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers and feed readers ask /favicon.ico whatever the page links: send them to the vendored file."""
    return HttpResponseRedirect(staticfiles_storage.url("favicon.ico"))


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database (and Redis, when configured) answer; 503 otherwise."""
    checks = {"database": health.database_check()}
    redis_check = health.redis_check()
    if redis_check is not None:
        checks["redis"] = redis_check
    ok = all(check.ok for check in checks.values())
    body: dict[str, object] = {
        "status": "ok" if ok else "unavailable",
        "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
        "worker_heartbeat_age_seconds": health.heartbeat_age_seconds(),
    }
    return JsonResponse(body, status=200 if ok else 503)


@csrf_exempt  # it changes nothing: a bearer-key POST to an unknown path gets this JSON 404, not the CSRF page
def api_not_found(request: HttpRequest) -> HttpResponse:
    return error_response(404, "not_found_error", f"No endpoint {request.method} {request.path}.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if request.path.startswith(API_PREFIXES):
        return api_not_found(request)
    return page_not_found(request, exception or Exception())


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith(API_PREFIXES):
        return error_response(500, "api_error", "Internal error; it has been logged.")
    return html_server_error(request)
