"""Pages of the accounts app: dashboard shell, API keys, SSH keys, organization. Thin: parse, call, render."""

from __future__ import annotations

from collections.abc import Callable

from allauth.account.adapter import get_adapter as get_account_adapter
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts import selectors, services
from accounts.auth import SESSION_ORG_KEY, principal_from_session
from accounts.invitation_links import SESSION_INVITATION_KEY, invitation_from_token
from accounts.models import ApiKeyKind, Invitation, User
from accounts.principal import Principal
from accounts.roles import CAN_MANAGE_MEMBERS, CAN_WRITE, Role, role_at_least
from billing.selectors import usage_month_to_date
from catalog import selectors as catalog_selectors
from deployments.selectors import deployment_rows, deployments_count, deployments_running_count
from gpucloud.core.errors import ApiError, Conflict, InvalidRequest
from pages import overview
from pages.catalog import model_cards
from pages.form_urls import get_goes_to

DASHBOARD_ROWS = 20  # the newest deployments not ended; the Deployments page lists them all
NEW_KEY_SESSION_KEY = "api_keys_new_key"  # a secret between a plain form post and the page showing it once


def _principal(request: HttpRequest) -> Principal:
    return principal_from_session(request)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Signed in: the dashboard. Signed out: what gpucloud is, the catalog's prices, sign up or in."""
    if request.user.is_authenticated:
        return redirect("dashboard")
    models = list(catalog_selectors.models_list())
    return render(request, "landing.html", {"cards": model_cards(models)})


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    org = _principal(request).org
    rows = deployment_rows(org, active_only=True, limit=DASHBOARD_ROWS)
    not_ended, running = deployments_count(org, active_only=True), deployments_running_count(org)
    context = {
        "rows": rows,
        "not_ended": not_ended,
        "running_deployments": running,
        "other_deployments": not_ended - running,
        "month": usage_month_to_date(org),
        "activity": overview.recent_activity(org),
        "quick_models": overview.quick_deploy_models(),
        "has_key": selectors.api_keys_of(org).filter(revoked_at__isnull=True).exists(),
    }
    return render(request, "accounts/dashboard.html", context)


# --- Invitations ----------------------------------------------------------------------


@require_GET
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """An invitation email's link. Signed in as the invited address: join now and work in the org.
    Signed out: sign up with the address filled in (the link proves it: no verification email),
    or sign in to an existing account; either way the invitation is accepted at sign-in."""
    found = invitation_from_token(token)
    if found is not None and request.user.is_authenticated and not found.is_pending:
        membership = selectors.membership_for(request.user, found.org_id)
        if membership is not None:  # the invitee opening the link again: take them to the org
            request.session[SESSION_ORG_KEY] = membership.org_id
            messages.info(request, f"You are a member of {found.org.name}; you are working in it now.")
            return redirect("dashboard")
    if found is None or not found.is_pending:
        return render(request, "accounts/invitation.html", {"invitation": found}, status=404 if found is None else 410)
    if request.user.is_authenticated:
        return _invitation_accept(request, found)
    request.session[SESSION_INVITATION_KEY] = token
    if User.objects.filter(email__iexact=found.email).exists():
        messages.info(request, f"Sign in as {found.email} to join {found.org.name}.")
        return redirect("account_login")
    get_account_adapter(request).stash_verified_email(request, found.email)
    messages.info(request, f"Create your account to join {found.org.name}: your address is already confirmed.")
    return redirect("account_signup")


def _invitation_accept(request: HttpRequest, found: Invitation) -> HttpResponse:
    try:
        membership = services.invitation_accept(invitation=found, user=request.user)  # type: ignore[arg-type]
    except ApiError as exc:
        context = {"invitation": found, "refusal": exc.message}
        return render(request, "accounts/invitation.html", context, status=exc.status)
    request.session[SESSION_ORG_KEY] = membership.org_id
    messages.success(request, f"You joined {found.org.name} as {membership.get_role_display().lower()} "
                              "and are working in it now.")  # fmt: skip
    return redirect("dashboard")


# --- API keys ---------------------------------------------------------------------------


def _api_keys_context(principal: Principal, **extra: object) -> dict[str, object]:
    keys = list(selectors.api_keys_of(principal.org))
    return {
        "account_keys": [k for k in keys if k.kind == ApiKeyKind.ACCOUNT],
        "deployment_keys": [k for k in keys if k.kind == ApiKeyKind.DEPLOYMENT],
        "can_write": role_at_least(principal.role, Role.MEMBER),
        **extra,
    }


def _render_keys(request: HttpRequest, principal: Principal, status: int = 200, **extra: object) -> HttpResponse:
    template = "accounts/api_keys.html#keys" if request.htmx else "accounts/api_keys.html"  # type: ignore[attr-defined]
    return render(request, template, _api_keys_context(principal, **extra), status=status)


@login_required
@require_GET
def api_keys(request: HttpRequest) -> HttpResponse:
    principal = _principal(request)
    made = request.session.pop(NEW_KEY_SESSION_KEY, None)
    shown = made if made and made.get("org") == principal.org.pk else {}
    return _render_keys(request, principal, new_key=shown.get("key"), new_key_name=shown.get("name"))


def _key_made(request: HttpRequest, principal: Principal, name: str, plaintext: str) -> HttpResponse:
    """A new secret, shown once. htmx swaps it into the page (the address stays /api-keys/); a plain
    form post redirects to the page (post/redirect/get), the secret riding in the session to that
    one page view, so a reload never posts again."""
    if request.htmx:  # type: ignore[attr-defined]
        return _render_keys(request, principal, new_key=plaintext, new_key_name=name)
    request.session[NEW_KEY_SESSION_KEY] = {"org": principal.org.pk, "key": plaintext, "name": name}
    return redirect("api_keys")


@get_goes_to("api_keys")
@login_required
@require_POST
def api_keys_create(request: HttpRequest) -> HttpResponse:
    principal = _principal(request)
    try:
        key, plaintext = services.api_key_create(
            principal=principal, name=request.POST.get("name", ""), kind=ApiKeyKind.ACCOUNT,
            scoped=bool(request.POST.get("scoped")),
        )  # fmt: skip
    except ApiError as exc:
        return _render_keys(request, principal, status=exc.status, form_error=exc.message)
    return _key_made(request, principal, key.name, plaintext)


@get_goes_to("api_keys")
@login_required
@require_POST
def api_keys_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    principal = _principal(request)
    key = selectors.api_key_get_for_org(principal.org, key_id)
    services.api_key_revoke(principal=principal, key=key)
    return _render_keys(request, principal) if request.htmx else redirect("api_keys")  # type: ignore[attr-defined]


@get_goes_to("api_keys")
@login_required
@require_POST
def api_keys_regenerate(request: HttpRequest, key_id: str) -> HttpResponse:
    principal = _principal(request)
    key = selectors.api_key_get_for_org(principal.org, key_id)
    key, plaintext = services.api_key_regenerate(principal=principal, key=key)
    return _key_made(request, principal, key.name, plaintext)


# --- SSH keys ---------------------------------------------------------------------------


def _render_ssh_keys(request: HttpRequest, principal: Principal, status: int = 200, **extra: object) -> HttpResponse:
    template = "accounts/ssh_keys.html#ssh-keys" if request.htmx else "accounts/ssh_keys.html"  # type: ignore[attr-defined]
    context = {
        "ssh_keys": selectors.ssh_keys_of(principal.org),
        "can_write": role_at_least(principal.role, CAN_WRITE),
        **extra,
    }
    return render(request, template, context, status=status)


@login_required
@require_GET
def ssh_keys(request: HttpRequest) -> HttpResponse:
    return _render_ssh_keys(request, _principal(request))


@get_goes_to("ssh_keys")
@login_required
@require_POST
def ssh_keys_add(request: HttpRequest) -> HttpResponse:
    """A plain form post (no htmx): a refusal re-renders the page with the reason beside what was
    pasted; success redirects (post/redirect/get) with the new key's fingerprint."""
    principal = _principal(request)
    public_key, name = request.POST.get("public_key", ""), request.POST.get("name", "")
    try:
        key = services.ssh_key_add(principal=principal, public_key=public_key, name=name)
    except (InvalidRequest, Conflict) as exc:  # a refusal of the input; a missing role is the 403 page
        return _render_ssh_keys(request, principal, exc.status, form_error=exc.message, form_public_key=public_key,
                                form_name=name)  # fmt: skip
    messages.success(request, f"SSH key “{key.name}” added ({key.fingerprint}).")
    return redirect("ssh_keys")


@get_goes_to("ssh_keys")
@login_required
@require_POST
def ssh_keys_delete(request: HttpRequest, ssh_key_id: str) -> HttpResponse:
    principal = _principal(request)
    key = selectors.ssh_key_get_for_org(principal.org, ssh_key_id)
    services.ssh_key_delete(principal=principal, key=key)
    if request.htmx:  # type: ignore[attr-defined]
        return _render_ssh_keys(request, principal)
    messages.success(request, f"SSH key “{key.name}” deleted.")
    return redirect("ssh_keys")


# --- Organization ---------------------------------------------------------------------


def _organization_page(request: HttpRequest, status: int = 200, **extra: object) -> HttpResponse:
    principal = _principal(request)
    return render(request, "accounts/organization.html", {
        "members": selectors.members_of(principal.org),
        "invitations": selectors.pending_invitations_of(principal.org),
        "can_manage": role_at_least(principal.role, CAN_MANAGE_MEMBERS),
        "roles": [r for r in Role if r != Role.OWNER or principal.role == Role.OWNER],
        "invite_role": "member",
        **extra,
    }, status=status)  # fmt: skip


@login_required
@require_GET
def organization(request: HttpRequest) -> HttpResponse:
    return _organization_page(request)


def _act(request: HttpRequest, action: Callable[[], object], success: str) -> HttpResponse:
    """Run a service call from a form and come back to the organization page with its outcome."""
    try:
        action()
    except ApiError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)
    return redirect("organization")


@get_goes_to("organization")
@login_required
@require_POST
def organization_invite(request: HttpRequest) -> HttpResponse:
    """Invite by email; a refusal comes back inline in the form with what was typed."""
    principal = _principal(request)
    email, role = request.POST.get("email", ""), request.POST.get("role", "member")
    try:
        services.invitation_create(principal=principal, email=email, role=role)
    except ApiError as exc:
        return _organization_page(request, exc.status, invite_error=exc.message, invite_email=email, invite_role=role)
    messages.success(request, f"Invitation sent to {email.strip().lower()}.")
    return redirect("organization")


@get_goes_to("organization")
@login_required
@require_POST
def organization_member_role(request: HttpRequest, user_id: int) -> HttpResponse:
    principal = _principal(request)
    try:
        membership = services.membership_role_set(
            principal=principal, user_id=user_id, role=request.POST.get("role", "")
        )
    except ApiError as exc:
        return _organization_page(request, exc.status, role_error=exc.message, role_error_user=user_id)
    messages.success(request, f"{membership.user.email} is now {membership.get_role_display().lower()}.")
    return redirect("organization")


@get_goes_to("organization")
@login_required
@require_POST
def organization_invitation_revoke(request: HttpRequest, invitation_id: str) -> HttpResponse:
    principal = _principal(request)
    return _act(
        request,
        lambda: services.invitation_revoke(principal=principal, invitation_id=invitation_id),
        "Invitation revoked.",
    )


@get_goes_to("organization")
@login_required
@require_POST
def organization_member_remove(request: HttpRequest, user_id: int) -> HttpResponse:
    principal = _principal(request)
    return _act(request, lambda: services.membership_remove(principal=principal, user_id=user_id), "Member removed.")


@get_goes_to("organization")
@login_required
@require_POST
def organization_create(request: HttpRequest) -> HttpResponse:
    name = request.POST.get("name", "")
    try:
        org = services.organization_create(user=request.user, name=name)  # type: ignore[arg-type]
    except ApiError as exc:
        return _organization_page(request, exc.status, create_error=exc.message, create_name=name)
    request.session[SESSION_ORG_KEY] = org.pk
    messages.success(request, f"Organization {org.name} created; you are its owner and work in it now.")
    return redirect("organization")


@get_goes_to("organization")
@login_required
@require_POST
def organization_switch(request: HttpRequest) -> HttpResponse:
    membership = selectors.membership_get_for_user(request.user, request.POST.get("org_id", ""))  # type: ignore[arg-type]
    request.session[SESSION_ORG_KEY] = membership.org_id
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("dashboard")  # never redirect off-site
    return redirect(next_url)
