"""The "New container endpoint" form: an image serving HTTP on one port, on replicas of a GPU type,
made by deployments.containers.container_deploy (the same endpoint POST /api/v1/deployments with kind
container makes). Its choices and the price per replica come from the stored offers (on-demand only:
an endpoint's replicas are not taken back), as the pod form's do; static/js/container_form.js follows
the choices with the same table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from django.conf import settings
from django.http import QueryDict

from catalog.models import CloudType
from deployments.containers import ContainerSettings, Placement
from deployments.pod_settings import GPU_COUNTS
from pages.pod_form import OfferPrice, PriceTable, price_table, whole

FIELDS = ("name", "image", "command", "port", "gpu_type", "gpu_count", "region", "cloud_type", "replicas")
ANY_REGION = ""  # the form's "Cheapest region with capacity"
IMAGE_EXAMPLES = [
    ("gpucloud/shell", "Python and a shell: the image the local provider runs (python3 -m http.server $PORT)"),
    ("vllm/vllm-openai:latest", "vLLM's OpenAI-compatible server (GPU clouds, Kubernetes)"),
]


@dataclass(frozen=True)
class ContainerForm:
    """What the form holds, as typed (shown again with a refusal)."""

    name: str = ""
    image: str = "gpucloud/shell"
    command: str = ""
    port: str = "8080"
    gpu_type: str = ""
    gpu_count: str = "1"
    region: str = ANY_REGION
    cloud_type: str = CloudType.ANY
    replicas: str = "1"

    @classmethod
    def posted(cls, data: QueryDict) -> ContainerForm:
        return cls(**{name: data.get(name, "").strip() for name in FIELDS if name in data})

    def asked(self) -> tuple[ContainerSettings, Placement]:
        """The endpoint asked for; InvalidRequest (with the field) for what is not even a number. The
        service checks the rest."""
        asked = ContainerSettings(
            name=self.name, description="", flavor_id="", replicas=whole(self.replicas, "replicas"),
            image=self.image, command=self.command, port=whole(self.port, "port"),
            gpu_count=whole(self.gpu_count, "gpu_count"),
        )  # fmt: skip
        return asked, Placement(gpu_type=self.gpu_type, region=self.region or None, cloud_type=self.cloud_type)


def cheapest(table: PriceTable, form: ContainerForm, tier: str) -> OfferPrice | None:
    """The on-demand offer a replica would most likely take on these terms: the cheapest with capacity,
    else the cheapest (shown as full); None where nothing is offered (rows are cheapest first)."""
    found = [
        r for r in table.rows
        if not r.spot and (r.gpu, str(r.count)) == (form.gpu_type, form.gpu_count)
        and form.region in (ANY_REGION, r.region) and tier in (CloudType.ANY, r.tier)
    ]  # fmt: skip
    found.sort(key=lambda r: r.price)
    return next((r for r in found if r.available > 0), found[0] if found else None)


def form_context(form: ContainerForm | None, errors: dict[str, str]) -> dict[str, object]:
    """The page's context: the choices, each tier's price per replica and the estimate."""
    table = price_table()
    form = form or ContainerForm()
    if not form.gpu_type and table.gpu_types:  # first visit: the first GPU type offered on demand
        first = next((r for r in table.rows if not r.spot), None)
        form = replace(form, gpu_type=first.gpu if first else table.gpu_types[0].slug)
    offer = cheapest(table, form, form.cloud_type)
    replicas = int(form.replicas) if form.replicas.isdigit() else 1
    estimate = None
    if offer is not None:
        estimate = {"replica": offer.price, "hour": offer.price * replicas, "replicas": replicas,
                    "full": offer.available <= 0}  # fmt: skip
    return {
        "form": form,
        "errors": errors,
        "table": table,
        "tiers": [(value, label, cheapest(table, form, value)) for value, label in CloudType.choices],
        "gpu_counts": GPU_COUNTS,
        "replicas_limit": settings.GPUCLOUD_MAX_REPLICAS,
        "image_examples": IMAGE_EXAMPLES,
        "estimate": estimate,
        "prices": {"rows": [asdict(r) for r in table.rows if not r.spot]},
    }
