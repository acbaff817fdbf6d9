"""Bodies and answers of reference/002's flavor and inference-service API
(deployments/api/inference_service.py), in its field names."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from ninja import Schema
from pydantic import Field, PlainValidator, WithJsonSchema

from gpucloud.core.schemas import BodyIn


def _instance_number(value: object) -> int:
    """reference/002's PUT example sends the number as a string ("2"): an integer or its digits."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,3}", value):
        return int(value)
    raise ValueError("an integer, or a string of its digits, is expected")


InstanceNumber = Annotated[
    int,
    PlainValidator(_instance_number),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string", "pattern": "^[0-9]{1,3}$"}]}),
]
STAMP = "YYYY-MM-DD HH:MM:SS, UTC (reference/002's format)"


class FlavorMetaOut(Schema):
    cuda: str | None = Field(description="Always null: the providers do not tell us their machines' CUDA version")
    region: str = Field(description="The region's slug (GET /api/v1/regions)")


class FlavorBillingOut(Schema):
    usd_price_unit: float = Field(description="USD per GPU per hour: the cheapest of the flavor's offers")
    cny_price_unit: float | None = Field(description="Always null: billing is in USD only")
    nmt_price_unit: float | None = Field(description="Always null: billing is in USD only")


class FlavorOut(Schema):
    flavor_id: str = Field(
        description="Stable: derived from the GPU type, region and tier only, so it survives offer refreshes"
    )
    display_name: str = Field(description="The GPU's name, spaces as underscores (e.g. NVIDIA_H100_80GB)")
    cluster_id: str = Field(description="The region's slug")
    cluster_flavor_id: str = Field(description="<region>_<gpu type>_<tier>: the flavor's readable name")
    meta_info: FlavorMetaOut
    billing: FlavorBillingOut
    created_at: str = Field(description=f"When its oldest live offer was last listed; {STAMP}")
    updated_at: str = Field(description=f"When its newest offer was last listed; {STAMP}")
    deleted_at: str | None = Field(description="Always null: a flavor without offers is not listed")
    is_deleted: bool = Field(description="Always false")
    available_num: int = Field(description="Machines its providers say can be launched now")
    node_max_gpu: int = Field(description="The most GPUs one instance of it can have (deploy_metadata.gpu_num)")


class FlavorListOut(Schema):
    flavor_list: list[FlavorOut]


class ResourceMetadataIn(Schema):
    flavor_id: str = Field(max_length=64, description="From GET /api/v1/inference-service/flavor")
    scale_type: str = Field("manual", max_length=20, description="manual only (400 otherwise)")
    target_instance_number: InstanceNumber = Field(
        1, description="Instances to run at creation: 1 to GPUCLOUD_MAX_REPLICAS (default 8); an integer or its digits"
    )


class DeployMetadataIn(BodyIn):
    image_url: str = Field(
        min_length=1, max_length=300,
        description="The image. Its provider must run it (400 otherwise): the local provider runs only its own "
        "images (gpucloud/shell, gpucloud/llama-cpp, gpucloud/jupyterlab); the GPU clouds run any image.",
    )  # fmt: skip
    command: str = Field(
        "", max_length=4096,
        description="Run by `sh -c` (empty: the image's own). It must serve HTTP on $PORT: `port` on the clouds, "
        "the port mapped for it on the local provider.",
    )  # fmt: skip
    port: int = Field(ge=1, le=65535, description="The port its HTTP server listens on")
    gpu_num: int = Field(
        1, ge=0, le=8, description="GPUs per instance: 1, 2, 4 or 8, at most the flavor's node_max_gpu; 0 is read "
        "as 1 (every instance runs on one of the flavor's machines, billed per GPU)",
    )  # fmt: skip


class InferenceServiceCreateIn(BodyIn):
    name: str = Field(max_length=100)
    description: str = Field("", max_length=1000)
    payment_type: str = Field("usd", max_length=20, description="usd only (400 otherwise): the prepaid balance")
    resource_metadata: ResourceMetadataIn
    deploy_metadata: DeployMetadataIn


class ResourceUpdateIn(Schema):
    target_instance_number: InstanceNumber = Field(
        description="Instances to run: 0 stops it (kept, billing nothing), up to GPUCLOUD_MAX_REPLICAS (default 8); "
        "an integer or its digits"
    )


class InferenceServiceUpdateIn(BodyIn):
    resource_metadata: ResourceUpdateIn


class ResourceMetadataOut(Schema):
    resource_display_name: str
    scale_type: str
    flavor_id: str
    target_instance_number: int
    scale_policy: None = Field(description="Always null: manual scaling only")
    VRAM: str = Field(description="Per instance, e.g. 80GB")  # reference/002's name
    image_size: str | None = Field(description="Always null: the platform does not pull images itself")


class BillingMetadataOut(Schema):
    usd_price_unit: float = Field(description="USD per GPU per hour it was priced at")
    usd_per_hour: float = Field(description="What its running instances cost per hour now")
    total_cost_usd: float = Field(description="Billed so far")


class EndpointMetadataOut(Schema):
    url: str = Field(description="Where it answers, with an account key of the org: Authorization: Bearer <key>")
    port: int


class DeployMetadataOut(Schema):
    image_url: str
    command: str
    port: int
    gpu_num: int


class InferenceServiceOut(Schema):
    service_id: str
    name: str
    description: str
    user_id: str | None = Field(description="Who created it (null: a key whose creator has left)")
    status: Literal["initializing", "available", "stopped", "unavailable"] = Field(
        description="initializing: created, starting or scaling up; available: every instance asked for is "
        "ready; stopped: scaled to 0 (or deleted); unavailable: an instance failed or was lost (status_info says why)"
    )
    status_info: str | None
    resource_metadata: ResourceMetadataOut
    billing_metadata: BillingMetadataOut
    endpoint_metadata: EndpointMetadataOut
    deploy_metadata: DeployMetadataOut
    service_type: Literal["normal"]
    created_at: str = Field(description=STAMP)
    updated_at: str = Field(description=f"Its last status or scale change; {STAMP}")
    deleted_at: str | None = Field(description=STAMP)
    is_deleted: bool
    payment_type: Literal["usd"]
