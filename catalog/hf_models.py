"""Hugging Face ids that are not in the catalog (GPUCLOUD_HF_MODELS): what an id is, whether the
operator allows it, how much VRAM it needs, and the catalog row made for it on first use.

The VRAM a model needs is estimated from its id alone (the hub is not asked: the control plane may
not reach it, and a request must not wait on it):
  parameters    the size in the name: `7B`, `0.5B`, `135M`, `8x7B` (experts x size: every expert's
                weights are loaded); the largest when the name has several (`...-7B-Instruct-1M`);
  bytes each    from a quantization hint in the name: AWQ, GPTQ, int4, 4bit, w4a16, nf4 -> 0.5;
                int8, 8bit, w8a8, fp8 -> 1; none -> 2 (bf16/fp16, what vLLM loads by default);
  VRAM (GB)     parameters x bytes each x 1.2 (KV cache and activations) + 2 (CUDA context, vLLM's
                own), rounded up.
So Qwen/Qwen2.5-7B-Instruct needs 7 x 2 x 1.2 + 2 = 18.8 -> 19 GB, its -AWQ build 7 x 0.5 x 1.2 + 2
= 6.2 -> 7 GB, Mixtral-8x7B 56 x 2 x 1.2 + 2 = 136.4 -> 137 GB. An id with no size in its name gets
no estimate: a request cannot cold-start it (nothing says which GPU fits), it is deployed explicitly
with a GPU type chosen (POST /api/v1/deployments).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from catalog.models import CatalogModel, GpuType, ModelCategory
from gpucloud.core.errors import InvalidRequest, PermissionDenied

# The hub's rule for an org or a repo name: letters, digits, '-', '_', '.', starting and ending with
# a letter or digit, no '--' or '..', at most 96 characters.
_PART = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_SIZE = re.compile(r"(?<![A-Za-z0-9.])(?:(\d{1,3})[xX])?(\d{1,5}(?:\.\d{1,3})?)([BbMm])(?![A-Za-z0-9])")
_HALF_BYTE_HINTS = frozenset({"awq", "gptq", "int4", "4bit", "w4a16", "nf4"})
_ONE_BYTE_HINTS = frozenset({"int8", "8bit", "w8a8", "fp8"})
_NOT_VLLM = {"gguf": "a GGUF file (llama.cpp's format)", "mlx": "an MLX build (Apple silicon)"}
OVERHEAD_TENTHS = 12  # x 1.2: the KV cache and activations beside the weights
BASE_GB = 2  # the CUDA context and vLLM's own
SLUG_MAX = CatalogModel._meta.get_field("slug").max_length or 80


class HfModelNotAllowed(PermissionDenied):
    type = "hf_model_not_allowed"


def is_hf_id(model: str) -> bool:
    """Whether `model` is meant as a Hugging Face id: no catalog slug or deployment id has a '/'."""
    return "/" in model


@dataclass(frozen=True)
class HfModel:
    hf_id: str  # as first written (the hub matches ids whatever their case)
    org: str
    name: str
    params_millions: int | None  # None: no size in the name
    size: str  # the size as the name says it ("7B", "8x7B"), "" when none
    half_bytes_per_param: int  # 1: 4-bit, 2: 8-bit, 4: 16-bit

    @property
    def slug(self) -> str:
        """Its catalog row's key: `hf-<org>--<name>` lowercased (the hub's names have no '--'), cut
        with a hash of the id where that is longer than a slug may be."""
        slug = f"hf-{self.org}--{self.name}".lower()
        if len(slug) <= SLUG_MAX:
            return slug
        digest = hashlib.sha256(self.hf_id.lower().encode()).hexdigest()[:8]
        return f"{slug[: SLUG_MAX - 9]}-{digest}"

    @property
    def vram_gb(self) -> int | None:
        """The estimate of the module docstring, in whole GB; None without a size."""
        if self.params_millions is None:
            return None
        # params (M) x bytes x 1.2 is MB; in integers: params x half-bytes x 12 / 20, plus 2000 MB.
        megabytes_x10 = self.params_millions * self.half_bytes_per_param * OVERHEAD_TENTHS * 10 // 20
        total_x10 = megabytes_x10 + BASE_GB * 10_000
        return -(-total_x10 // 10_000)


def hf_model_parse(model: str, *, param: str) -> HfModel:
    """The id, its size and quantization; 400 (naming `param`) for what is no Hugging Face id, or a
    repository vLLM cannot serve."""
    org, _, name = model.partition("/")
    if not (_PART.fullmatch(org) and _PART.fullmatch(name)):
        raise InvalidRequest(
            f"{model!r} is not a Hugging Face model id: expected 'org/name' (letters, digits, '-', '_', '.'), "
            "like 'Qwen/Qwen2.5-7B-Instruct'.",
            param=param,
        )
    tokens = {t.lower() for t in re.split(r"[-_.]", name)}
    for token, what in _NOT_VLLM.items():
        if token in tokens:
            raise InvalidRequest(f"{model!r} looks like {what}, which vLLM does not serve.", param=param)
    sizes = [(_millions(m), m[0]) for m in _SIZE.finditer(name)]
    params, size = max(sizes) if sizes else (None, "")
    half_bytes = 1 if tokens & _HALF_BYTE_HINTS else 2 if tokens & _ONE_BYTE_HINTS else 4
    return HfModel(model, org, name, params, size, half_bytes)


def _millions(match: re.Match[str]) -> int:
    experts, number, unit = match.groups()
    millions = Decimal(number) * (1000 if unit in "Bb" else 1) * int(experts or 1)
    return max(1, int(millions))


def hf_check_allowed(model: HfModel, *, param: str) -> None:
    """403 unless GPUCLOUD_HF_MODELS allows the model's org ("any", or an allow-list naming it)."""
    setting = settings.GPUCLOUD_HF_MODELS.strip()
    if setting.lower() in ("", "off"):
        raise HfModelNotAllowed(
            f"Hugging Face models outside the catalog are off on this platform (GPUCLOUD_HF_MODELS=off), so "
            f"{model.hf_id!r} cannot be deployed; use a catalog model (GET /api/v1/models), or ask the operator.",
            param=param,
        )
    if setting.lower() == "any":
        return
    allowed = [org.strip() for org in setting.split(",") if org.strip()]
    if model.org.lower() not in {org.lower() for org in allowed}:
        raise HfModelNotAllowed(
            f"Hugging Face models of {model.org!r} are not allowed on this platform (GPUCLOUD_HF_MODELS allows "
            f"{', '.join(allowed)}).",
            param=param,
        )


def hf_catalog_model(model: HfModel, *, gpu: GpuType, price_per_hour_micros: int) -> CatalogModel:
    """The catalog row of `model`, made now on its first use (by any org) on `gpu` at that price: an
    LLM served by vLLM from the hub id. A row made before is returned as it is."""
    row, _ = CatalogModel.objects.get_or_create(
        slug=model.slug,
        defaults={
            "hf_id": model.hf_id,
            "name": model.hf_id[:120],
            "category": ModelCategory.LLM,
            "parameters": model.size,
            "min_vram_gb": model.vram_gb or 0,
            "engine": "vllm",
            "engine_args": {"hf_repo": model.hf_id},
            "default_gpu_type": gpu,
            "description": f"{model.hf_id} from Hugging Face, deployed on first use (not in the catalog).",
            "hourly_price_micros": price_per_hour_micros,
        },
    )
    return row
