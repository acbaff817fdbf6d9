"""Catalog rows. Prices are integer micro-USD per hour (1 USD = 1_000_000)."""

from __future__ import annotations

from django.db import models


class Vendor(models.TextChoices):
    NVIDIA = "nvidia", "NVIDIA"
    AMD = "amd", "AMD"
    CPU = "cpu", "CPU"


class GpuType(models.Model):
    slug = models.SlugField(primary_key=True, max_length=40)
    name = models.CharField(max_length=80)
    vendor = models.CharField(max_length=10, choices=Vendor.choices)
    gpu_count = models.PositiveSmallIntegerField(default=1)
    vram_gb = models.PositiveIntegerField(help_text="Total VRAM across the GPUs of this type")
    hourly_price_micros = models.BigIntegerField(help_text="List price per hour, micro-USD")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "slug"]

    def __str__(self) -> str:
        return self.name


class Region(models.Model):
    slug = models.SlugField(primary_key=True, max_length=20)
    name = models.CharField(max_length=80)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class ModelCategory(models.TextChoices):
    LLM = "llm", "Large language model"
    EMBEDDING = "embedding", "Embeddings"
    STT = "stt", "Speech to text"
    TTS = "tts", "Text to speech"
    IMAGE = "image", "Image generation"


class CatalogModelQuerySet(models.QuerySet["CatalogModel"]):
    def curated(self) -> CatalogModelQuerySet:
        """The operator's catalog: without the rows made for Hugging Face ids on first use
        (catalog/hf_models.py), which only the orgs that deployed them see, as their deployments."""
        return self.filter(hf_id="")


class CatalogModel(models.Model):
    """A model the platform can serve. Most rows are the operator's catalog; a row with `hf_id` was
    made when an org first deployed or called that Hugging Face id (GPUCLOUD_HF_MODELS allowing it):
    it lets deployments, metering and listing treat the model like any other, and the catalog's pages
    and API leave it out (`curated()`)."""

    slug = models.SlugField(primary_key=True, max_length=80)
    name = models.CharField(max_length=120)
    category = models.CharField(max_length=10, choices=ModelCategory.choices)
    parameters = models.CharField(max_length=20, help_text="Human size, e.g. '8B'")
    min_vram_gb = models.PositiveIntegerField()
    engine = models.CharField(max_length=40, help_text="Serving engine, e.g. llama.cpp, vllm")
    engine_args = models.JSONField(default=dict)
    default_gpu_type = models.ForeignKey(GpuType, on_delete=models.PROTECT, related_name="+")
    description = models.TextField()
    hourly_price_micros = models.BigIntegerField(help_text="Price shown per replica-hour, micro-USD")
    context_length = models.PositiveIntegerField(null=True, blank=True)
    sort_order = models.PositiveSmallIntegerField(default=0)
    hf_id = models.CharField(
        max_length=200, blank=True, default="", help_text="The Hugging Face id (org/name) it was made for; blank: ours"
    )

    objects = CatalogModelQuerySet.as_manager()

    class Meta:
        ordering = ["sort_order", "slug"]

    def __str__(self) -> str:
        return self.name


class Preset(models.Model):
    """A named GPU class + engine configuration (reference/000 'Inference Presets')."""

    slug = models.SlugField(primary_key=True, max_length=20)
    name = models.CharField(max_length=40)
    gpu_type = models.ForeignKey(GpuType, on_delete=models.PROTECT, related_name="+")
    engine_config = models.JSONField(default=dict)
    best_for = models.CharField(max_length=120)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class Provider(models.Model):
    """A source of compute the operator connected (this machine, a Kubernetes cluster, a GPU cloud).

    `config` holds the driver's non-secret settings (base URL, margins, regions...). `credentials` holds
    the secret ones (a cloud's API key) sealed (gpucloud/core/sealed.py): written through
    catalog.services.provider_credentials_set, read only by the fleet when it builds the driver, never
    shown again. GPUCLOUD_PROVIDER_<SLUG>_API_KEY in the environment overrides the stored key.
    """

    slug = models.SlugField(primary_key=True, max_length=40)
    name = models.CharField(max_length=80)
    driver = models.CharField(max_length=200, help_text="A registry name (local, kubernetes) or a dotted path")
    enabled = models.BooleanField(default=True)
    config = models.JSONField(default=dict, blank=True)
    credentials = models.TextField(blank=True, editable=False, help_text="Sealed; never shown")

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


class OfferTier(models.TextChoices):
    COMMUNITY = "community", "Community"
    SECURE = "secure", "Secure"


class CloudType(models.TextChoices):
    """Which tiers a workload may run on, as its owner chose. Secure: data-center machines the provider
    runs (RunPod's Secure Cloud, Vast's datacenter hosts, Lambda, DigitalOcean, the operator's own).
    Community: third parties' machines vetted by the provider (RunPod's Community Cloud, Vast's other
    verified hosts), cheaper and less private. Any: the cheapest offer of either."""

    ANY = "any", "Any (cheapest)"
    SECURE = "secure", "Secure"
    COMMUNITY = "community", "Community"


class Offer(models.Model):
    """What one provider can launch: a GPU type x count in a region, on a tier, spot or on-demand
    (DESIGN §5). Written only by the fleet's refresh (fleet/offers.py), which replaces a provider's
    rows with what its driver lists; requests read these rows and never ask a driver.

    `gpu_type` and `region` are the driver's slugs, not foreign keys: a driver may list a GPU or a
    region the catalog does not know (yet); such rows are kept and simply match nothing the catalog
    sells until the catalog learns the slug. Rows not seen for GPUCLOUD_OFFER_MAX_AGE_SECONDS are
    expired: readers ignore them and the next refresh deletes them. (Reliability, observed launch
    success and preemptions, is to join these columns later.)
    """

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="offers")
    gpu_type = models.SlugField(max_length=40)
    gpu_count = models.PositiveSmallIntegerField(default=1)
    region = models.SlugField(max_length=40)
    tier = models.CharField(max_length=10, choices=OfferTier.choices)
    spot = models.BooleanField(default=False)
    price_per_hour_micros = models.BigIntegerField(help_text="What the customer pays per hour, micro-USD")
    cost_per_hour_micros = models.BigIntegerField(help_text="What the provider charges the operator per hour")
    available = models.PositiveIntegerField(help_text="How many can be launched, as of seen_at")
    seen_at = models.DateTimeField(help_text="When the provider last listed it")

    class Meta:
        ordering = ["price_per_hour_micros", "-available", "provider_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "gpu_type", "gpu_count", "region", "tier", "spot"], name="offer_one_per_terms"
            )
        ]
        indexes = [models.Index(fields=["gpu_type", "region"], name="offer_gpu_region"),
                   models.Index(fields=["seen_at"], name="offer_seen_at")]  # fmt: skip

    def __str__(self) -> str:
        return f"{self.provider_id}: {self.gpu_count}x {self.gpu_type} in {self.region}"


# How long a withdrawn offer's id still rents (by falling over to a like offer): a client that listed
# offers a while ago and rents one now gets a machine, not a 404.
WITHDRAWN_KEEP_SECONDS = 24 * 3600


class WithdrawnOffer(models.Model):
    """An offer its provider no longer lists (or that aged out, or whose provider was disabled), kept
    by the id it had with its terms for WITHDRAWN_KEEP_SECONDS: renting it by that id
    (deployments/rent.py) falls over to a like offer instead of answering 404, since the id a client
    picked from the marketplace may vanish between its listing and its rent."""

    id = models.BigIntegerField(primary_key=True, help_text="The Offer's id it was")
    provider_slug = models.SlugField(max_length=40)
    gpu_type = models.SlugField(max_length=40)
    gpu_count = models.PositiveSmallIntegerField()
    region = models.SlugField(max_length=40)
    tier = models.CharField(max_length=10, choices=OfferTier.choices)
    spot = models.BooleanField()
    price_per_hour_micros = models.BigIntegerField()
    withdrawn_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"off_{self.pk} ({self.provider_slug}: {self.gpu_count}x {self.gpu_type} in {self.region}, withdrawn)"

    def as_offer(self) -> Offer:
        """Its terms as an (unsaved, never launched) Offer, available nowhere."""
        return Offer(
            pk=self.pk, provider_id=self.provider_slug, gpu_type=self.gpu_type, gpu_count=self.gpu_count,
            region=self.region, tier=self.tier, spot=self.spot, price_per_hour_micros=self.price_per_hour_micros,
            cost_per_hour_micros=0, available=0, seen_at=self.withdrawn_at,
        )  # fmt: skip
