"""A page form's POST address answers a GET too: reloading the page a form post rendered, or opening
that address from the history or a bookmark, goes to the page the form lives on instead of a 405."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

View = Callable[..., HttpResponse]


def get_goes_to(page: str, *, keep: tuple[str, ...] = (), anchor: str = "") -> Callable[[View], View]:
    """Wrap a POST-only page view: GET and HEAD redirect to the URL named `page`, built from the
    URL arguments named in `keep`, at `anchor`; other methods reach the view (and its checks)."""

    def wrap(view: View) -> View:
        @wraps(view)
        def answer(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            if request.method in ("GET", "HEAD"):
                return redirect(reverse(page, kwargs={k: kwargs[k] for k in keep}) + anchor)
            return view(request, **kwargs)

        return answer

    return wrap
