from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.auth import principal_from_session
from accounts.roles import CAN_WRITE, role_at_least
from catalog import selectors
from catalog.models import CatalogModel, ModelCategory
from catalog.selectors import Availability, DeployOption, availability_by_model, deploy_options, presets_for
from deployments.models import DeploymentKind
from deployments.scaling.settings import IDLE_TIMEOUT_BOUNDS
from deployments.services import Serverless, deployment_create, serverless_options
from gpucloud.core.errors import ApiError, InvalidRequest, NotFound
from pages.form_urls import get_goes_to


@login_required
@require_GET
def catalog(request: HttpRequest) -> HttpResponse:
    category = request.GET.get("category") or None
    search = request.GET.get("q", "").strip()[:100]
    gpu_type = request.GET.get("gpu") or None
    try:
        models = list(selectors.models_list(category=category, search=search, gpu_type=gpu_type))
    except InvalidRequest:  # an unknown category from an old link: show everything rather than fail
        category, models = None, list(selectors.models_list(search=search, gpu_type=gpu_type))
    cards = model_cards(models)
    template = "catalog/catalog.html#models" if request.htmx else "catalog/catalog.html"  # type: ignore[attr-defined]
    context = {
        "groups": _by_category(cards), "categories": ModelCategory.choices, "category": category, "search": search,
        "gpu_types": selectors.gpu_types_list(), "gpu_type": gpu_type,
    }  # fmt: skip
    return render(request, template, context)


@dataclass(frozen=True)
class ModelCard:
    """A catalog model with where it can run now (the catalog, the landing page, Quick deploy)."""

    model: CatalogModel
    availability: Availability


def model_cards(models: list[CatalogModel]) -> list[ModelCard]:
    found = availability_by_model(models)
    return [ModelCard(m, found[m.slug]) for m in models]


def _by_category(cards: list[ModelCard]) -> list[tuple[str, list[ModelCard]]]:
    """The models under their category's heading, categories in the catalog's order, empty ones left out."""
    return [
        (label, found)
        for value, label in ModelCategory.choices
        if (found := [c for c in cards if c.model.category == value])
    ]


def _model_or_404(slug: str) -> CatalogModel:
    try:
        return selectors.model_get(slug)
    except NotFound:
        raise Http404("No such model in the catalog.") from None


def _model_page(request: HttpRequest, model: CatalogModel, status: int = 200, **form: object) -> HttpResponse:
    options = deploy_options(model)
    chosen = form.get("placement") or (options[0].key if options else "")
    context = {
        "model": model,
        "options": options,
        "availability": Availability(options),
        "chosen": chosen,
        "name": form.get("name") or model.slug,
        "replicas": form.get("replicas", 1),
        "presets": presets_for(options),
        "preset": form.get("preset", ""),
        "kind": form.get("kind") or DeploymentKind.MODEL,
        "idle_minutes": form.get("idle_minutes", settings.GPUCLOUD_SERVERLESS_IDLE_SECONDS // 60),
        "start_cold": form.get("start_cold", False),
        "estimate": _estimate(options, chosen, form.get("replicas", 1)),
        "max_replicas": settings.GPUCLOUD_MAX_REPLICAS,
        "errors": form.get("errors", {}),
        "can_write": role_at_least(principal_from_session(request).role, CAN_WRITE),
    }
    return render(request, "catalog/model.html", context, status=status)


@login_required
@require_GET
def model_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return _model_page(request, _model_or_404(slug))


@get_goes_to("model_detail", keep=("slug",), anchor="#deploy-h")
@login_required
@require_POST
def model_deploy(request: HttpRequest, slug: str) -> HttpResponse:
    """One-click deploy: the form's GPU and region, replicas and name; refusals are shown in the
    form with what to do, and nothing is created."""
    model = _model_or_404(slug)
    name = request.POST.get("name", "").strip()[:100]
    placement = request.POST.get("placement", "")
    preset = request.POST.get("preset", "")
    gpu_type, _, region = placement.partition("@")
    kind = request.POST.get("kind", DeploymentKind.MODEL)
    start_cold = request.POST.get("start_cold") == "on"
    idle_text = request.POST.get("idle_minutes", "").strip()
    form: dict[str, object] = {"name": name, "placement": placement, "preset": preset, "kind": kind,
                               "idle_minutes": idle_text, "start_cold": start_cold}  # fmt: skip
    try:
        replicas = int(request.POST.get("replicas", "1"))
    except ValueError:
        replicas = 0
    form["replicas"] = replicas
    if not gpu_type or not region:
        return _model_page(request, model, 400, **form, errors={"placement": "Choose a GPU and region."})
    try:
        serverless = _serverless(kind, idle_text, start_cold)
        deployment = deployment_create(
            principal=principal_from_session(request), name=name, model_id=model.slug, gpu_type=gpu_type,
            region=region, replicas=replicas, preset=preset or None, serverless=serverless,
        )  # fmt: skip
    except ApiError as exc:
        field = exc.param if exc.param in ("replicas", "gpu_type", "region", "preset") else "form"
        field = "placement" if field in ("gpu_type", "region") else field
        field = "kind" if exc.param in ("kind", "idle_timeout_seconds", "start_cold") else field
        return _model_page(request, model, exc.status, **form, errors={field: _with_advice(exc)})
    messages.success(request, f"Deploying {model.name}: it shows as active here when its first replica is ready.")
    return redirect("deployment_detail", deployment_id=deployment.pk)


def _serverless(kind: str, idle_text: str, start_cold: bool) -> Serverless | None:
    """The form's dedicated / serverless choice as deployment_create takes it (idle time in minutes)."""
    if kind != DeploymentKind.SERVERLESS:
        return serverless_options(kind=kind, idle_timeout_seconds=None, start_cold=False)
    try:
        idle_seconds = round(float(idle_text) * 60) if idle_text else None
    except ValueError:
        raise InvalidRequest("Idle minutes must be a number, e.g. 15.", param="idle_timeout_seconds") from None
    low, high = IDLE_TIMEOUT_BOUNDS
    if idle_seconds is not None and not low <= idle_seconds <= high:  # said in the form's unit
        raise InvalidRequest(f"Idle minutes must be between {low // 60} and {high // 60} (a week).",
                             param="idle_timeout_seconds")  # fmt: skip
    return serverless_options(kind=kind, idle_timeout_seconds=idle_seconds, start_cold=start_cold)


def _estimate(options: list[DeployOption], chosen: object, replicas: object) -> dict[str, int] | None:
    """What the chosen GPU costs for the asked replicas, per hour and per day, shown before launch;
    None for a replica count the deploy would refuse (no figure for what cannot run)."""
    option = next((o for o in options if o.key == chosen), None)
    if option is None or not isinstance(replicas, int) or not 1 <= replicas <= settings.GPUCLOUD_MAX_REPLICAS:
        return None
    return {"replicas": replicas, "hour": option.price_per_hour_micros * replicas,
            "day": option.price_per_day_micros * replicas}  # fmt: skip


def _with_advice(exc: ApiError) -> str:
    """The refusal and what to do about it."""
    # A 402 already says what to do (billing.advice): saying it again here repeated it.
    if exc.status == 409:
        return f"{exc.message} Pick another GPU or region above."
    return exc.message
