from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from catalog import selectors
from catalog.models import ModelCategory
from gpucloud.errors import InvalidRequest


@login_required
@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    category = request.GET.get("category") or None
    try:
        models = list(selectors.models_list(category=category))
    except InvalidRequest:
        category, models = None, list(selectors.models_list())
    template = "catalog/catalog.html#models" if request.htmx else "catalog/catalog.html"  # type: ignore[attr-defined]
    return render(request, template, {"models": models, "categories": ModelCategory.choices, "category": category})
