from __future__ import annotations

from datetime import datetime

from django.conf import settings
from ninja import Schema
from pydantic import Field
from pydantic.json_schema import JsonDict

from gpucloud.core.schemas import BodyIn
from webhooks.events import SUBSCRIBABLE
from webhooks.models import RetrySchedule

# What the services check (400 naming the choices), written into the description too.
_EVENTS: JsonDict = {"minItems": 1, "items": {"type": "string", "enum": list(SUBSCRIBABLE["deployment"])}}
_POD_EVENTS: JsonDict = {"minItems": 1, "items": {"type": "string", "enum": list(SUBSCRIBABLE["pod"])}}
_SCHEDULE: JsonDict = {"enum": [*RetrySchedule.values, None]}
# The URL's form as webhooks/guard.py checks it: https (http too in debug or for an operator's allowed
# hosts), a host (a name, an address, or [an IPv6 address]), an optional port, no user name or password.
_SCHEME = "[Hh][Tt][Tt][Pp][Ss]?" if settings.DEBUG or settings.WEBHOOK_ALLOWED_HOSTS else "[Hh][Tt][Tt][Pp][Ss]"
_URL: JsonDict = {
    "maxLength": 2000,
    "pattern": rf"^{_SCHEME}://([^/?#@:\[\]\s]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{{1,5}})?([/?#]\S*)?$",
}
_URL_RULES = (
    "https URL that receives the events (http only in debug or for WEBHOOK_ALLOWED_HOSTS); its host must resolve "
    "to public internet addresses only (400 otherwise: webhooks never reach the platform's own network)"
)


class WebhookIn(BodyIn):
    url: str = Field(description=_URL_RULES, json_schema_extra=_URL)
    events: list[str] = Field(
        description="Event types to receive, e.g. deployment.active, deployment.sla_breach", json_schema_extra=_EVENTS
    )
    retry_schedule: str | None = Field(
        None,
        description="standard (8 attempts over about 27 hours, the default) or short (5 attempts over 10 minutes)",
        json_schema_extra=_SCHEDULE,
    )


class WebhookPatchIn(BodyIn):
    url: str | None = Field(None, description=_URL_RULES, json_schema_extra=_URL)
    events: list[str] | None = Field(None, json_schema_extra=_EVENTS)
    retry_schedule: str | None = Field(None, json_schema_extra=_SCHEDULE)
    enabled: bool | None = Field(None, description="false pauses deliveries; true turns a disabled webhook back on")


class PodWebhookIn(WebhookIn):
    events: list[str] = Field(
        description="Event types to receive, e.g. pod.running, pod.preempted (400 for a deployment's)",
        json_schema_extra=_POD_EVENTS,
    )


class PodWebhookPatchIn(WebhookPatchIn):
    events: list[str] | None = Field(None, json_schema_extra=_POD_EVENTS)


class _WebhookFields(Schema):
    id: str
    url: str
    events: list[str]
    retry_schedule: str
    enabled: bool
    disabled_reason: str | None = Field(description="Why deliveries stopped (e.g. the receiver answered 410)")
    created_at: datetime


class _Secret(Schema):
    secret: str = Field(description="Signing secret (whsec_...): shown only now; keep it to verify deliveries")


class WebhookOut(_WebhookFields):
    deployment_id: str


class WebhookCreatedOut(WebhookOut, _Secret):
    pass


class PodWebhookOut(_WebhookFields):
    pod_id: str


class PodWebhookCreatedOut(PodWebhookOut, _Secret):
    pass


class AttemptOut(Schema):
    number: int
    at: datetime
    response_code: int | None
    latency_ms: int | None
    error: str | None
    succeeded: bool


class DeliveryOut(Schema):
    id: str
    event_id: str = Field(description="The webhook-id header: the same on every attempt of this event")
    event_type: str
    status: str = Field(description="pending (an attempt is due at next_attempt_at), succeeded or failed")
    attempts: int
    next_attempt_at: datetime | None
    last_response_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None
    attempt_log: list[AttemptOut]


class EventTypeOut(Schema):
    type: str
    description: str
