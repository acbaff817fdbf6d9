"""The "Create custom pod" form (reference/003's sketch): its choices and prices, read from the stored
offers (never from a provider), and the posted fields read into the PodSettings that
deployments.pods.pod_create checks. The estimate is computed here for the first render and by
static/js/pod_form.js, from the same price table, as the choices change."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, replace

from django.conf import settings
from django.http import QueryDict

from accounts.models import Organization
from catalog.gpu_units import offer_slug
from catalog.models import CloudType, GpuType, Region
from catalog.selectors import offers_live
from deployments.models import Volume, VolumeStatus
from deployments.pod_settings import GPU_COUNTS, NewVolume, PodSettings
from deployments.pod_templates import PodTemplate
from deployments.selectors import templates_of, volumes_of
from gpucloud.core.errors import InvalidRequest
from gpucloud.core.money import MICROS_PER_USD

HOURS_PER_MONTH = 730  # the GB-month a volume price is quoted in (RunPod's convention: 730 h)
IMAGE_EXAMPLES = [
    ("gpucloud/shell", "a shell machine with Python: the image the local provider runs"),
    ("runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04", "PyTorch with CUDA (GPU clouds, Kubernetes)"),
    ("vllm/vllm-openai:latest", "vLLM's OpenAI-compatible server (GPU clouds, Kubernetes)"),
]
# The service names a refused setting (ApiError.param); the form shows the message by this field.
FIELD_OF_PARAM = {"max_price_per_hour_usd": "max_price", "size_gb": "volume_size", "volume_id": "storage",
                  "volume": "storage", "volume_mount_path": "mount_path", "args": "command"}  # fmt: skip
FIELDS = ("name", "gpu_type", "gpu_count", "region", "image", "cloud_type", "container_disk_gb", "ports", "env",
          "command", "storage", "volume_size", "mount_path", "volume_id", "max_price", "template", "offer")  # fmt: skip
OFFER_TERMS = ("gpu_type", "gpu_count", "region", "cloud_type")  # what a marketplace Rent link fills, with spot


@dataclass(frozen=True)
class PodForm:
    """What the form holds, as typed (shown again with a refusal)."""

    name: str = ""
    gpu_type: str = ""
    gpu_count: str = "1"
    region: str = ""
    image: str = "gpucloud/shell"
    cloud_type: str = CloudType.ANY
    spot: bool = False
    max_price: str = ""
    container_disk_gb: str = "20"
    storage: str = "none"  # none, new or existing
    volume_size: str = "20"
    mount_path: str = "/workspace"
    volume_id: str = ""
    ports: str = ""
    env: str = ""
    command: str = ""
    template: str = ""  # the template it started from: its settings fill the form, its secrets are made at create
    offer: str = (
        ""  # a marketplace offer (off_<n>) to rent: the pod runs on it, or on its fallover (deployments/rent.py)
    )

    @classmethod
    def of_template(cls, template: PodTemplate) -> PodForm:
        """The form filled with a template's settings (the choices of GPU and region stay the page's)."""
        volume = template.volume_size_gb
        return cls(
            name=template.name, image=template.image, container_disk_gb=str(template.container_disk_gb),
            ports=" ".join(template.ports), env="\n".join(f"{k}={v}" for k, v in template.env.items()),
            command=shlex.join([*template.command, *template.args]), template=template.id,
            storage="new" if volume else "none", volume_size=str(volume or 20), mount_path=template.volume_mount_path,
        )  # fmt: skip

    @classmethod
    def of_offer(cls, query: QueryDict) -> PodForm:
        """The form filled from a marketplace Rent link: the offer's id and terms (the page shows them)."""
        terms = {name: query.get(name, "").strip()[:40] for name in OFFER_TERMS if query.get(name)}
        return cls(**terms, spot=query.get("spot") == "on", offer=query.get("offer", "").strip()[:40])

    @classmethod
    def posted(cls, data: QueryDict) -> PodForm:
        typed = {name: data.get(name, "").strip() for name in FIELDS if name in data}
        return cls(**typed, spot=data.get("spot") == "on")

    def settings(self) -> PodSettings:
        """The pod asked for; InvalidRequest (with the field) for what is not even a number or a list.
        The service checks the rest."""
        existing = self.storage == "existing"
        return PodSettings(
            name=self.name, image=self.image, gpu_type=self.gpu_type, gpu_count=whole(self.gpu_count, "gpu_count"),
            region=None if existing else self.region or None, cloud_type=self.cloud_type, spot=self.spot,
            max_price_micros=_micros(self.max_price) if self.spot and self.max_price else None,
            container_disk_gb=whole(self.container_disk_gb, "container_disk_gb"),
            ports=self.ports.replace(",", " ").split(), env=env_of_lines(self.env), command=argv_of_line(self.command),
            volume_id=(self.volume_id or None) if existing else None,
            new_volume=NewVolume(size_gb=whole(self.volume_size, "size_gb")) if self.storage == "new" else None,
            volume_mount_path=self.mount_path if self.storage != "none" else "/workspace", template=self.template,
        )  # fmt: skip


def whole(text: str, param: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InvalidRequest(f"{text[:20]!r} is not a whole number.", param=param) from None


def _micros(text: str) -> int:
    try:
        return round(float(text.lstrip("$")) * MICROS_PER_USD)
    except ValueError:
        raise InvalidRequest(
            f"{text[:20]!r} is not a price in dollars, e.g. 0.50.", param="max_price_per_hour_usd"
        ) from None


def env_of_lines(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        if not equals:
            raise InvalidRequest(f"{line[:60]!r}: write one variable a line, as NAME=value.", param="env")
        env[name.strip()] = value
    return env


def argv_of_line(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:  # an unclosed quote
        raise InvalidRequest(f"The command does not parse as a shell line: {exc}.", param="command") from None


@dataclass(frozen=True)
class OfferPrice:
    """One live offer, as the estimate reads it (`gpu` is the catalog's GPU type, `count` of it)."""

    gpu: str
    count: int
    region: str
    tier: str
    spot: bool
    price: int
    available: int


@dataclass(frozen=True)
class PriceTable:
    """The GPU types with live offers, the regions they are in, and every live offer of them as the
    estimate reads it (`rows`, also handed to the page's script)."""

    gpu_types: list[GpuType]
    regions: list[Region]
    rows: list[OfferPrice]

    def cheapest(self, form: PodForm, *, region: str, tier: str) -> OfferPrice | None:
        """The offer pod_create would take for these terms: the cheapest with capacity, else the
        cheapest (shown as full); None where nothing is offered (rows are cheapest first)."""
        terms = (form.gpu_type, form.gpu_count, region, form.spot)
        found = [
            r for r in self.rows if (r.gpu, str(r.count), r.region, r.spot) == terms and tier in (CloudType.ANY, r.tier)
        ]
        return next((r for r in found if r.available > 0), found[0] if found else None)


def price_table() -> PriceTable:
    """In three queries: the GPU types (one GPU each: counts are the form's), the live offers, the regions."""
    gpus = [g for g in GpuType.objects.all() if g.gpu_count <= 1]
    unit = {offer_slug(g.slug, count): (g.slug, count) for g in gpus for count in GPU_COUNTS}
    rows = [
        OfferPrice(*unit[o.gpu_type], region=o.region, tier=o.tier, spot=o.spot, price=o.price_per_hour_micros,
                   available=o.available)
        for o in offers_live().filter(gpu_type__in=list(unit))
    ]  # fmt: skip
    offered = {r.gpu for r in rows}
    regions = Region.objects.filter(slug__in={r.region for r in rows})
    return PriceTable([g for g in gpus if g.slug in offered], list(regions), rows)


def form_context(org: Organization, form: PodForm | None, errors: dict[str, str]) -> dict[str, object]:
    """The page's context: choices, prices and the estimate for what is chosen."""
    table = price_table()
    volumes = [v for v in volumes_of(org) if v.status in (VolumeStatus.AVAILABLE, VolumeStatus.CREATING)]
    form = form or PodForm()
    if not form.gpu_type and table.gpu_types:  # first visit: the first GPU type offered, where it is
        first = next(r for r in table.rows if r.gpu == table.gpu_types[0].slug)
        form = replace(form, gpu_type=first.gpu, gpu_count=str(first.count), region=first.region)
    region = _region(form, volumes)
    tiers = [(value, label, table.cheapest(form, region=region, tier=value)) for value, label in CloudType.choices]
    return {
        "form": form, "errors": errors, "table": table, "volumes": volumes, "tiers": tiers,
        "gpu_counts": GPU_COUNTS, "image_examples": IMAGE_EXAMPLES, "templates": templates_of(org),
        "estimate": _estimate(table, form, region, volumes), "storage": storage_prices(),
        "prices": {"rows": [asdict(r) for r in table.rows],
                   "running_gb_hour_micros": settings.GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS,
                   "volumes": {v.pk: {"region": v.region_id, "hour": _running_price(v.size_gb)} for v in volumes}},
    }  # fmt: skip


def storage_prices() -> dict[str, int]:
    """What a volume bills per GB (deployments.volumes): the running price while a pod runs on it, the
    idle price otherwise; per hour, and per month as RunPod publishes them."""
    running, idle = settings.GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS, settings.GPUCLOUD_VOLUME_IDLE_GB_HOUR_MICROS
    return {"running_gb_hour": running, "idle_gb_hour": idle,
            "running_gb_month": running * HOURS_PER_MONTH, "idle_gb_month": idle * HOURS_PER_MONTH}  # fmt: skip


def _running_price(size_gb: int) -> int:
    """A volume's price per hour while the pod runs on it (what the estimate of a running pod adds)."""
    return size_gb * settings.GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS


def _region(form: PodForm, volumes: list[Volume]) -> str:
    """Where the pod would run: an existing volume's region, else the chosen one."""
    if form.storage == "existing":
        return next((v.region_id for v in volumes if v.pk == form.volume_id), form.region)
    return form.region


def _estimate(table: PriceTable, form: PodForm, region: str, volumes: list[Volume]) -> dict[str, int] | None:
    """The GPU's price and the storage's, per hour and per day; None where nothing is offered."""
    offer = table.cheapest(form, region=region, tier=form.cloud_type)
    if offer is None:
        return None
    storage = 0  # at the running price: the estimate is of the pod running
    if form.storage == "new" and form.volume_size.isdigit():
        storage = _running_price(int(form.volume_size))
    elif form.storage == "existing":
        storage = next((_running_price(v.size_gb) for v in volumes if v.pk == form.volume_id), 0)
    hour = offer.price + storage
    return {"gpu": offer.price, "storage": storage, "hour": hour, "day": hour * 24, "full": offer.available <= 0}
