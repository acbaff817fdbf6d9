from __future__ import annotations

from datetime import datetime

from ninja import Schema
from pydantic import Field


class DeploymentCreateIn(Schema):
    name: str = Field("", max_length=100)
    model_id: str
    gpu_type: str
    region: str
    replicas: int = 1


class InstanceOut(Schema):
    id: str
    state: str
    provider: str | None
    launched_at: datetime | None
    ready_at: datetime | None
    terminated_at: datetime | None
    failure_reason: str | None


class DeploymentOut(Schema):
    id: str
    name: str
    status: str
    status_reason: str | None
    model_id: str | None
    gpu_type: str | None
    region: str | None
    replicas: int
    endpoint_url: str = Field(description="POST OpenAI chat completions here (with your API key)")
    hourly_cost_usd: float = Field(description="All replicas, per hour")
    created_at: datetime
    started_at: datetime | None
    runtime_seconds: int
    total_cost_usd: float
    instances: list[InstanceOut]


class DeploymentEventOut(Schema):
    at: datetime
    instance_id: str | None
    from_status: str
    to_status: str
    reason: str


class GpuModelConfigOut(Schema):
    model_id: str
    gpu_type: str
    regions: list[str] = Field(description="Regions with an offer for this GPU now")
    hourly_price_usd: float | None


class LogsOut(Schema):
    instance_id: str
    lines: list[str]
