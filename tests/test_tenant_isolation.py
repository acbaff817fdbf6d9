"""Tenant isolation matrix (DESIGN §8): two orgs, every kind of caller, every route of /api/v1 and of
the /v1 gateway with each method, with path parameters naming the caller's own objects, the other
org's objects (all of them, or one nested under the caller's own parent), and ids that exist nowhere.

The /api/v1 routes are walked from the ninja API and the gateway's from its endpoint table, so a
route added later is in the matrix without editing this file (a new kind of path parameter fails
loudly until it is taught below).

A cell *leaks* when it answers 2xx where the caller must be refused, when its answer about another
org's object differs from the answer for an id that exists nowhere (an existence oracle), when the
body names the other org's objects, or when a refused request wrote to the database. A cell whose
status falls outside its expected class (another org's object not a 404, a scoped key's account
call not a 403, one's own object refused, a 500) fails the test too.
"""

from __future__ import annotations

import base64
import json
import logging
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import product
from typing import Any, cast

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.apps import apps
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection, transaction
from django.test import Client
from django.utils import timezone

from accounts.auth import SESSION_ORG_KEY, InferenceKeyAuth
from accounts.models import ApiKey, Invitation, KeyGrant, Membership, User
from accounts.principal import Principal
from accounts.roles import Role
from accounts.services import api_key_create, api_key_revoke, ssh_key_add, user_create
from catalog.models import Offer
from deployments.flavors import flavor_id_of
from deployments.models import Deployment
from gateway import counters as metering
from gateway import keys, routing, sessions
from gateway.app import ENDPOINTS
from gpucloud.api import api
from gpucloud.asgi import DEPLOYMENT_CHAT, http_app
from tests.support.gateway import serving_deployment
from tests.support.personas import PASSWORD, Persona
from tests.support.ssh_keys import ssh_line

pytestmark = pytest.mark.django_db

KEY_KINDS = ("account_key", "scoped_key", "scoped_key_elsewhere", "own_deployment_key", "other_deployment_key",
             "revoked_key")  # fmt: skip
CALLERS = ("session", *KEY_KINDS, "none")
SCOPED = {"scoped_key", "scoped_key_elsewhere", "own_deployment_key", "other_deployment_key"}
MAY_INVOKE_MAIN = {"scoped_key", "own_deployment_key"}  # scoped callers that reach their org's main deployment
UNAUTHENTICATED = {"none", "revoked_key"}


def _an_offer_id() -> str:
    """The local machine's offer (local_offer() stores it): offers are the same for every org, like the catalog."""
    return f"off_{Offer.objects.get(provider_id='local', gpu_type='cpu', region='local', spot=False).pk}"


# Catalog objects and offers: the same for every org.
GLOBAL_PARAMS: dict[str, Callable[[], str]] = {"slug": lambda: "smollm2-135m-instruct", "offer_id": _an_offer_id}
CHAT = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
WEBHOOK_URL = "https://203.0.113.10/hook"  # a documentation address: the webhook guard refuses it at once


# --- Expected outcomes --------------------------------------------------------------------

SERVED = "served"  # the caller may: anything but 401/403/404 and 5xx (503: no replica yet)
ANY = "any"  # a public route


def served(status: int) -> bool:
    return status not in (401, 403, 404) and (status < 500 or status == 503)


# --- Two tenants ----------------------------------------------------------------------------


@dataclass
class Tenant:
    slug: str
    persona: Persona
    member: User
    main: Deployment  # granted to the scoped key; the own deployment key's
    other: Deployment  # the other deployment key's; granted to the scoped key elsewhere
    secrets: dict[str, str]  # caller kind -> plaintext key
    scoped_key: ApiKey
    invitation: Invitation
    _lazy: dict[str, Any] = field(default_factory=dict)

    @property
    def org_id(self) -> str:
        return self.persona.org.pk

    def param(self, name: str, path: str = "") -> str | int:
        """This org's object for a path parameter (under /pods/, a webhook is the pod's)."""
        if name == "webhook_id" and path.startswith("/api/v1/pods/"):
            return self.pod_webhook().pk
        makers: dict[str, Callable[[], str | int]] = {
            "org_id": lambda: self.org_id,
            "deployment_id": lambda: self.main.pk,
            "key_id": lambda: self.scoped_key.pk,
            "user_id": lambda: self.member.pk,
            "invitation_id": lambda: self.invitation.pk,
            "webhook_id": lambda: self.webhook().pk,
            "delivery_id": lambda: self.delivery().pk,
            "volume_id": lambda: self.volume().pk,
            "pod_id": lambda: self.pod().pk,
            "service_id": lambda: self.service().pk,
            "ssh_key_id": lambda: self.ssh_key().pk,
            "template_id": lambda: self.template().pk,
        }
        if name not in makers:
            pytest.fail(f"The isolation matrix cannot fill path parameter {name!r}: teach Tenant.param (or "
                        "GLOBAL_PARAMS) which object it names.")  # fmt: skip
        return makers[name]()

    def webhook(self) -> Any:
        if "webhook" not in self._lazy:
            subscription = apps.get_model("webhooks", "WebhookSubscription")
            self._lazy["webhook"] = subscription.objects.create(
                org=self.persona.org, deployment=self.main, url=f"{WEBHOOK_URL}/{self.slug}",
                events=["deployment.active"], secret="whsec_" + base64.b64encode(self.slug.encode().ljust(24)).decode(),
            )  # fmt: skip
        return self._lazy["webhook"]

    def pod_webhook(self) -> Any:
        if "pod_webhook" not in self._lazy:
            self._lazy["pod_webhook"] = apps.get_model("webhooks", "WebhookSubscription").objects.create(
                org=self.persona.org, deployment=self.pod(), url=f"{WEBHOOK_URL}/{self.slug}/pod",
                events=["pod.running"], secret="whsec_" + base64.b64encode(self.slug.encode().ljust(24)).decode(),
            )  # fmt: skip
        return self._lazy["pod_webhook"]

    def delivery(self) -> Any:
        if "delivery" not in self._lazy:
            event = apps.get_model("webhooks", "WebhookEvent").objects.create(
                org=self.persona.org, deployment=self.main, type="deployment.active", dedupe_key=f"iso:{self.slug}"
            )
            self._lazy["delivery"] = apps.get_model("webhooks", "WebhookDelivery").objects.create(
                subscription=self.webhook(), event=event, status="succeeded"
            )
        return self._lazy["delivery"]

    def volume(self) -> Any:
        if "volume" not in self._lazy:
            self._lazy["volume"] = apps.get_model("deployments", "Volume").objects.create(
                org=self.persona.org, name=f"{self.slug}-volume", size_gb=10, region_id="local", provider="local",
                tag="isolation", status="available",
            )  # fmt: skip
        return self._lazy["volume"]

    def pod(self) -> Any:
        if "pod" not in self._lazy:
            deployment = apps.get_model("deployments", "Deployment").objects.create(
                id=f"pod_{self.slug}", org=self.persona.org, name=f"{self.slug}-pod", kind="pod", gpu_type_id="cpu",
                region_id="local", status="stopped",
            )  # fmt: skip
            apps.get_model("deployments", "Pod").objects.create(deployment=deployment, image="gpucloud/shell")
            self._lazy["pod"] = deployment
        return self._lazy["pod"]

    def service(self) -> Any:
        """A container endpoint (reference/002's inference service), stopped."""
        if "service" not in self._lazy:
            deployment = apps.get_model("deployments", "Deployment").objects.create(
                id=f"svc_{self.slug}", org=self.persona.org, name=f"{self.slug}-service", kind="container",
                gpu_type_id="cpu", region_id="local", status="scaled_to_zero", desired_replicas=0,
            )  # fmt: skip
            apps.get_model("deployments", "Pod").objects.create(
                deployment=deployment, image="gpucloud/shell", ports=["8080/http"], command=["sh", "-c", "true"]
            )
            self._lazy["service"] = deployment
        return self._lazy["service"]

    def template(self) -> Any:
        if "template" not in self._lazy:
            self._lazy["template"] = apps.get_model("deployments", "Template").objects.create(
                org=self.persona.org, name=f"{self.slug}-template", image="gpucloud/shell"
            )
        return self._lazy["template"]

    def ssh_key(self) -> Any:
        if "ssh_key" not in self._lazy:
            owner = Principal(user=self.persona.user, org=self.persona.org, role=Role.OWNER)
            self._lazy["ssh_key"] = ssh_key_add(principal=owner, public_key=ssh_line(comment=f"{self.slug}@laptop"))
        return self._lazy["ssh_key"]

    def markers(self) -> set[str]:
        """Strings that identify this org's objects: none may reach another org's caller."""
        org = self.persona.org
        found = {org.pk, org.name, self.persona.user.email, self.member.email, self.invitation.pk,
                 self.invitation.email, self.main.pk, self.main.name, self.other.pk, self.other.name}  # fmt: skip
        found |= set(ApiKey.objects.filter(org=org).values_list("pk", flat=True))
        found |= {str(getattr(obj, "pk", "")) for obj in self._lazy.values()}
        found |= {self._lazy[name].url for name in ("webhook", "pod_webhook") if name in self._lazy}
        if "ssh_key" in self._lazy:
            found |= {self._lazy["ssh_key"].fingerprint, self._lazy["ssh_key"].name}
        return found


def make_tenant(slug: str, persona: Persona, member_email: str) -> Tenant:
    member, _ = user_create(email=member_email, password=PASSWORD)
    Membership.objects.create(org=persona.org, user=member, role=Role.MEMBER)
    main, other = serving_deployment(persona, []), serving_deployment(persona, [])
    Deployment.objects.filter(pk=main.pk).update(name=f"{slug}-main")
    Deployment.objects.filter(pk=other.pk).update(name=f"{slug}-other")
    main.refresh_from_db()
    other.refresh_from_db()
    owner = Principal(user=persona.user, org=persona.org, role=Role.OWNER)

    def key(name: str, **kwargs: Any) -> tuple[ApiKey, str]:
        return api_key_create(principal=owner, name=f"{slug} {name}", **kwargs)

    scoped, scoped_secret = key("scoped", kind="account", scoped=True)
    KeyGrant.objects.create(key=scoped, deployment=main)
    elsewhere, elsewhere_secret = key("scoped elsewhere", kind="account", scoped=True)
    KeyGrant.objects.create(key=elsewhere, deployment=other)
    _, own_secret = key("own", kind="deployment", deployment_id=main.pk)
    _, other_secret = key("other", kind="deployment", deployment_id=other.pk)
    revoked, revoked_secret = key("revoked", kind="account")
    api_key_revoke(principal=owner, key=revoked)
    invitation = Invitation.objects.create(org=persona.org, email=f"invitee-{slug}@example.com", role=Role.MEMBER)
    secrets = {"account_key": persona.key, "scoped_key": scoped_secret, "scoped_key_elsewhere": elsewhere_secret,
               "own_deployment_key": own_secret, "other_deployment_key": other_secret,
               "revoked_key": revoked_secret}  # fmt: skip
    return Tenant(slug, persona, member, main, other, secrets, scoped, invitation)


# --- Targets: which org each path parameter names ---------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str  # own | foreign | foreign <param> (one nested object of the other org)
    params: dict[str, str | int]
    control: dict[str, str | int] | None  # the same with the other org's ids replaced by ids of nothing

    @property
    def foreign(self) -> bool:
        return self.control is not None


def missing(value: str | int) -> str | int:
    return 2**31 - 1 if isinstance(value, int) else f"{value.split('_')[0]}_{'2' * 16}"


def targets(names: list[str], mine: Tenant, theirs: Tenant, path: str = "") -> Iterator[Target]:
    tenant_params = [n for n in names if n not in GLOBAL_PARAMS]
    own = {n: GLOBAL_PARAMS[n]() if n in GLOBAL_PARAMS else mine.param(n, path) for n in names}
    yield Target("own", own, None)
    if not tenant_params:
        return
    foreign_sets = [set(tenant_params)]
    if len(tenant_params) > 1:  # a nested object of the other org under the caller's own parent
        foreign_sets += [{n} for n in tenant_params[1:]]
    for foreign in foreign_sets:
        params = {n: theirs.param(n, path) if n in foreign else v for n, v in own.items()}
        control = {n: missing(v) if n in foreign else v for n, v in params.items()}
        label = "foreign" if foreign == set(tenant_params) else f"foreign {next(iter(foreign))}"
        yield Target(label, params, control)


# --- Routes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    params: list[str]
    public: bool
    inference: bool  # scoped keys may call it on the deployments they may invoke
    body_schema: dict[str, Any] | None


def api_routes() -> list[Route]:
    """Every operation of the /api/v1 NinjaAPI, as ninja's own OpenAPI generator walks them."""

    schema = api.get_openapi_schema(path_prefix="")
    bodies = {
        op["operationId"]: op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        for methods in schema["paths"].values()
        for op in methods.values()
    }
    bodies = {k: _resolve(v, schema["components"].get("schemas", {})) for k, v in bodies.items()}
    routes = []
    for bound in api._get_bound_routers():
        for path, path_view in bound.path_operations.items():
            full = "/api/v1/" + "/".join(p.strip("/") for p in (bound.prefix, path) if p.strip("/"))
            names = [n for _, n, _, _ in string.Formatter().parse(full) if n]
            for op, method in ((o, m) for o in path_view.operations for m in o.methods):
                routes.append(Route(
                    method, full, names, public=not op.auth_callbacks,
                    inference=any(isinstance(cb, InferenceKeyAuth) for cb in op.auth_callbacks),
                    body_schema=bodies.get(api.get_openapi_operation_id(op)),
                ))  # fmt: skip
    return routes


def _resolve(schema: Any, components: dict[str, Any]) -> Any:
    """The schema with its $refs inlined (request bodies are small and not recursive)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _resolve(components[schema["$ref"].rsplit("/", 1)[-1]], components)
        return {k: _resolve(v, components) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_resolve(v, components) for v in schema]
    return schema


def body_for(route: Route, caller: Tenant) -> Any:
    """A valid body: required fields only, with plausible values (an invalid body would be refused
    with 422 before the route looks up the objects the matrix is about)."""
    if route.inference:
        return CHAT
    if route.body_schema is None:
        return None
    hints = {
        "name": "isolation", "email": "invitee-new@example.com", "url": WEBHOOK_URL, "events": ["deployment.active"],
        "role": "inference" if route.path.endswith("/permissions") else "viewer",
        "api_key_id": caller.scoped_key.pk, "model_id": "smollm2-135m-instruct", "gpu_type": "cpu", "region": "local",
        "public_key": ssh_line(),
        "flavor_id": flavor_id_of("cpu", "local", "secure"),  # offered: see local_offer
    }  # fmt: skip
    return _example(route.body_schema, hints)


def _example(schema: dict[str, Any], hints: dict[str, Any], name: str = "") -> Any:
    if name in hints:
        return hints[name]
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    if "properties" in schema:  # an object, whatever rules between its fields an allOf adds
        return {prop: _example(schema["properties"][prop], hints, prop) for prop in schema.get("required", [])}
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            options = [s for s in schema[combined] if s.get("type") != "null"]
            return _example(options[0], hints, name)
    kind = schema.get("type")
    if kind == "object":
        return {prop: _example(schema["properties"][prop], hints, prop) for prop in schema.get("required", [])}
    if kind == "array":
        return [_example(schema.get("items", {}), hints)] * schema.get("minItems", 0)
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    return "x" * max(1, schema.get("minLength", 1))


def expected_api(caller: str, route: Route, target: Target) -> str | frozenset[int]:
    if route.public:
        return ANY
    if caller in UNAUTHENTICATED:
        return frozenset({401})
    if caller in SCOPED:
        if not route.inference or "deployment_id" not in route.params:
            return frozenset({403})  # no account-level access, whatever the object
        if target.foreign:
            return frozenset({404})
        return SERVED if caller in MAY_INVOKE_MAIN else frozenset({403})
    return frozenset({404}) if target.foreign else SERVED


# --- The gateway (/v1, and the per-deployment routes the ASGI app hands it) -------------------


@dataclass(frozen=True)
class GatewayRoute:
    method: str
    path: str
    params: list[str]
    multipart: bool = False
    model_in_body: bool = False  # /v1 inference: the target deployment is the body's "model"
    lists: bool = False  # GET /v1/models/{id}: a deployment the key may not call is absent (404)


def gateway_routes() -> list[GatewayRoute]:
    routes = [GatewayRoute("GET", "/v1/models", []),
              GatewayRoute("GET", "/v1/models/{deployment_id}", ["deployment_id"], lists=True)]  # fmt: skip
    routes += [GatewayRoute("POST", path, ["deployment_id"], endpoint.multipart, model_in_body=True)
               for path, endpoint in ENDPOINTS.items()]  # fmt: skip
    for operation in ("chat/completions", "embeddings"):  # the per-deployment routes (gpucloud/asgi.py)
        routes += [GatewayRoute("POST", f"/api/v1/deployments/{{deployment_id}}/{operation}", ["deployment_id"]),
                   GatewayRoute("POST", f"/api/v1/orgs/{{org_id}}/deployments/{{deployment_id}}/{operation}",
                                ["org_id", "deployment_id"])]  # fmt: skip
    return routes


def expected_gateway(caller: str, route: GatewayRoute, target: Target) -> str | frozenset[int]:
    if caller in UNAUTHENTICATED or (caller == "session" and route.path.startswith("/v1/")):
        return frozenset({401})  # a session is accepted on the per-deployment chat routes only
    if target.foreign:
        return frozenset({404})
    if caller in SCOPED - MAY_INVOKE_MAIN and route.params:
        return frozenset({404} if route.lists else {403})
    if route.path.startswith("/api/") and route.path.endswith("/embeddings"):
        return frozenset({404})  # the matrix's deployment serves chat: its own URL has no /embeddings
    return SERVED


def gateway_request(route: GatewayRoute, params: dict[str, str | int]) -> dict[str, Any]:
    path = route.path.format(**params)
    if route.method == "GET":
        return {"method": "GET", "url": path}
    model = str(params["deployment_id"]) if route.model_in_body else CHAT["model"]
    if route.multipart:
        return {"method": "POST", "url": path, "data": {"model": model}, "files": {"file": ("a.wav", b"RIFF")}}
    # A body the endpoint's OpenAI request schema accepts (the gateway checks it before routing).
    if path.endswith("/embeddings"):
        body: dict[str, Any] = {"model": model, "input": "x"}
    elif path.endswith("/v1/completions"):
        body = {"model": model, "prompt": "x", "max_tokens": 2}
    else:
        body = {**CHAT, "model": model}
    return {"method": "POST", "url": path, "json": body}


# --- Running cells ---------------------------------------------------------------------------


@dataclass
class Outcome:
    status: int
    body: str
    writes: list[str]


class WriteLog:
    """Every statement that changed rows, but a key's last-used stamp (bookkeeping of authentication).
    A scoped UPDATE or DELETE that matched nothing changed nothing."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        statement = sql.lstrip().upper()
        changed = statement.startswith(("INSERT", "UPDATE", "DELETE")) and context["cursor"].rowcount != 0
        if changed and 'SET "LAST_USED_AT"' not in statement:
            self.writes.append(sql)
        return result


@dataclass
class Matrix:
    log: WriteLog
    markers: dict[str, set[str]]  # per org: what identifies its objects
    cells: int = 0
    leaks: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def judge(
        self, label: str, expected: str | frozenset[int], outcome: Outcome, control: Outcome | None,
        sent: set[str], markers: set[str],
    ) -> None:  # fmt: skip
        self.cells += 1
        refused = isinstance(expected, frozenset)
        status = outcome.status
        if refused and 200 <= status < 300:
            self.leaks.append(f"{label}: {status} where it must be refused")
        if control is not None and control.status != status:
            self.leaks.append(f"{label}: {status}, but {control.status} for an id that exists nowhere")
        body = outcome.body
        for value in sorted(sent, key=len, reverse=True):
            body = body.replace(value, "")
        if revealed := sorted(m for m in markers if m and m in body):
            self.leaks.append(f"{label}: the body names the other org's {revealed}")
        if refused and outcome.writes:
            self.leaks.append(f"{label}: refused with {status} but wrote {outcome.writes[0][:80]}")
        if (refused and status not in expected) or (expected == SERVED and not served(status)):
            self.unexpected.append(f"{label}: {status}, expected {sorted(expected) if refused else expected}: "
                                   f"{outcome.body[:160]}")  # fmt: skip


def api_client(caller: str, tenant: Tenant) -> tuple[Client, dict[str, Any]]:
    client = Client()
    if caller == "session":
        client.force_login(tenant.persona.user)
        session = client.session
        session[SESSION_ORG_KEY] = tenant.org_id
        session.save()
    if caller in tenant.secrets:
        return client, {"HTTP_AUTHORIZATION": f"Bearer {tenant.secrets[caller]}"}
    return client, {}


def api_call(client: Client, headers: dict[str, Any], route: Route, params: dict[str, Any], body: Any,
             log: WriteLog) -> Outcome:  # fmt: skip
    """One request in a savepoint that is rolled back: every cell sees the same two orgs."""
    with transaction.atomic():
        log.writes.clear()
        data = "" if body is None else json.dumps(body)
        response = client.generic(route.method, route.path.format(**params), data=data,
                                  content_type="application/json", **headers)  # fmt: skip
        content = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
        outcome = Outcome(response.status_code, content.decode(errors="replace"), list(log.writes))
        transaction.set_rollback(True)
    return outcome


def served_by_the_gateway(route: Route) -> bool:
    """gpucloud/asgi.py hands these to the gateway whatever the auth: their cells are the gateway's."""
    return route.method == "POST" and DEPLOYMENT_CHAT.match(route.path.replace("{", "").replace("}", "")) is not None


def run_api_cells(matrix: Matrix, tenants: tuple[Tenant, Tenant], routes: list[Route]) -> None:
    for (mine, theirs), caller in product((tenants, tenants[::-1]), CALLERS):
        client, headers = api_client(caller, mine)
        markers = matrix.markers[theirs.slug] | (matrix.markers[mine.slug] if caller == "none" else set())
        for route in routes:
            if served_by_the_gateway(route):
                continue
            body = body_for(route, mine)
            for target in targets(route.params, mine, theirs, route.path):
                label = f"{mine.slug} {caller} {route.method} {route.path} [{target.name}]"
                outcome = api_call(client, headers, route, target.params, body, matrix.log)
                control = (api_call(client, headers, route, target.control, body, matrix.log)
                           if target.control else None)  # fmt: skip
                sent = {str(v) for v in target.params.values()} | {json.dumps(body)}
                matrix.judge(label, expected_api(caller, route, target), outcome, control, sent, markers)


def gateway_headers(caller: str, tenant: Tenant) -> dict[str, str]:
    if caller == "session":  # a signed-in page: its session cookie, and the CSRF token it carries
        client, _ = api_client(caller, tenant)
        token = "c" * 32
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        return {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={token}",
                "X-CSRFToken": token}  # fmt: skip
    return {"Authorization": f"Bearer {tenant.secrets[caller]}"} if caller in tenant.secrets else {}


def run_gateway_cells(matrix: Matrix, tenants: tuple[Tenant, Tenant]) -> None:
    """All in one event loop (the gateway's caches and counters belong to the loop); its database
    reads run on this thread, inside the test's transaction."""

    signed = {(tenant.slug, caller): gateway_headers(caller, tenant) for tenant, caller in product(tenants, CALLERS)}

    async def run() -> None:
        transport = httpx.ASGITransport(app=cast(Any, http_app))  # a plain ASGI callable, typed loosely
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for (mine, theirs), caller in product((tenants, tenants[::-1]), CALLERS):
                headers = signed[mine.slug, caller]
                markers = matrix.markers[theirs.slug] | (matrix.markers[mine.slug] if caller == "none" else set())
                for route in gateway_routes():
                    for target in targets(route.params, mine, theirs):
                        label = f"{mine.slug} {caller} {route.method} {route.path} [{target.name}] (gateway)"
                        outcome = await call(client, headers, route, target.params)
                        control = await call(client, headers, route, target.control) if target.control else None
                        sent = {str(v) for v in target.params.values()}
                        matrix.judge(label, expected_gateway(caller, route, target), outcome, control, sent, markers)

        await metering.flush_now()

    async def call(client: httpx.AsyncClient, headers: dict[str, str], route: GatewayRoute,
                   params: dict[str, Any]) -> Outcome:  # fmt: skip
        matrix.log.writes.clear()
        response = await client.request(**gateway_request(route, params), headers=headers)
        return Outcome(response.status_code, response.text, list(matrix.log.writes))

    # Requests the ASGI app hands to Django end with close_old_connections, which would close the
    # test's connection mid-transaction; Django's own test clients keep it open the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        async_to_sync(run)()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def local_offer() -> None:
    """A live offer of the local machine: a flavor a service can name (GET /inference-service/flavor)."""
    Offer.objects.update_or_create(
        provider_id="local", gpu_type="cpu", gpu_count=1, region="local", tier="secure", spot=False,
        defaults={"price_per_hour_micros": 100_000, "cost_per_hour_micros": 0, "available": 1,
                  "seen_at": timezone.now()},
    )  # fmt: skip


@pytest.mark.slow
def test_no_route_leaks_across_tenants_or_past_a_keys_scope(
    alice: Persona, charlie: Persona, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenants = (make_tenant("alice", alice, "bob@example.com"), make_tenant("charlie", charlie, "dave@example.com"))
    local_offer()
    routes = api_routes()
    for tenant, (name, path) in product(
        tenants, {(n, r.path) for r in routes for n in r.params if n not in GLOBAL_PARAMS}
    ):
        tenant.param(name, path)  # every object a route names exists before the first cell
    # Nothing changes between cells (each is rolled back): the gateway's caches need not expire mid-run.
    keys.cache_clear()
    sessions.cache_clear()
    routing.routes_clear()
    monkeypatch.setattr(keys._cache, "ttl", 3600.0)
    monkeypatch.setattr(sessions._cache, "ttl", 3600.0)
    monkeypatch.setattr(routing._routes, "ttl", 3600.0)
    matrix = Matrix(WriteLog(), {tenant.slug: tenant.markers() for tenant in tenants})
    logging.disable(logging.ERROR)  # thousands of refusals are logged as warnings; a 500 fails a cell anyway
    try:
        with connection.execute_wrapper(matrix.log):
            run_api_cells(matrix, tenants, routes)
            run_gateway_cells(matrix, tenants)
    finally:
        logging.disable(logging.NOTSET)
        keys.cache_clear()
        sessions.cache_clear()
        routing.routes_clear()
    print(f"\nisolation matrix: {matrix.cells} cells, {len(matrix.leaks)} leaks")
    assert matrix.leaks == [], "\n".join(matrix.leaks)
    assert matrix.unexpected == [], "\n".join(matrix.unexpected)
    # The walk found the routes (a broken walk would pass with few cells).
    walked = {(r.method, r.path) for r in routes}
    assert {("POST", "/api/v1/deployments/{deployment_id}/permissions"), ("GET", "/api/v1/billing/balance"),
            ("DELETE", "/api/v1/api-keys/{key_id}"), ("DELETE", "/api/v1/ssh-keys/{ssh_key_id}")} <= walked  # fmt: skip
