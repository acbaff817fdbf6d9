"""Hugging Face ids (catalog/hf_models.py): the size and quantization read from the name, the VRAM
estimate (params x bytes each x 1.2 + 2 GB, rounded up), the catalog slug, the ids refused, and the
operator's GPUCLOUD_HF_MODELS."""

from __future__ import annotations

from typing import Any

import pytest

from catalog.hf_models import HfModelNotAllowed, hf_check_allowed, hf_model_parse
from gpucloud.core.errors import InvalidRequest


@pytest.mark.parametrize(
    ("hf_id", "params_millions", "half_bytes", "vram_gb"),
    [
        ("Qwen/Qwen2.5-7B-Instruct", 7_000, 4, 19),  # 7 x 2 x 1.2 + 2 = 18.8
        ("Qwen/Qwen2.5-0.5B-Instruct", 500, 4, 4),  # 0.5 x 2 x 1.2 + 2 = 3.2
        ("HuggingFaceTB/SmolLM2-135M-Instruct", 135, 4, 3),  # 0.135 x 2 x 1.2 + 2 = 2.324
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", 56_000, 4, 137),  # 8 experts x 7B: 134.4 + 2
        ("Qwen/Qwen2.5-7B-Instruct-AWQ", 7_000, 1, 7),  # 4-bit: 7 x 0.5 x 1.2 + 2 = 6.2
        ("TheBloke/Llama-2-13B-chat-GPTQ", 13_000, 1, 10),  # 13 x 0.5 x 1.2 + 2 = 9.8
        ("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", 8_000, 2, 12),  # 8 x 1 x 1.2 + 2 = 11.6
        ("RedHatAI/Qwen2.5-3B-quantized.w8a8", 3_000, 2, 6),  # 3 x 1 x 1.2 + 2 = 5.6
        ("unsloth/llama-3-8b-bnb-4bit", 8_000, 1, 7),  # lower case size: 8 x 0.5 x 1.2 + 2 = 6.8
        ("Qwen/Qwen2.5-7B-Instruct-1M", 7_000, 4, 19),  # the largest size in the name, not the context
        ("Qwen/Qwen3-30B-A3B", 30_000, 4, 74),  # the total size; "A3B" (active) is no size of its own
        ("BAAI/bge-m3", None, 4, None),  # no size in the name
    ],
)
def test_the_size_and_quantization_in_the_name_give_the_vram_estimate(
    hf_id: str, params_millions: int | None, half_bytes: int, vram_gb: int | None
) -> None:
    model = hf_model_parse(hf_id, param="model")
    assert (model.params_millions, model.half_bytes_per_param, model.vram_gb) == (params_millions, half_bytes, vram_gb)
    assert model.hf_id == hf_id and f"{model.org}/{model.name}" == hf_id


def test_the_slug_is_the_id_lowercased_and_a_long_one_is_cut_with_a_hash() -> None:
    assert hf_model_parse("Qwen/Qwen2.5-7B-Instruct", param="model").slug == "hf-qwen--qwen2.5-7b-instruct"
    long = hf_model_parse(f"{'o' * 60}/{'n' * 60}-7B", param="model").slug
    other = hf_model_parse(f"{'o' * 60}/{'n' * 60}-8B", param="model").slug
    assert len(long) == 80 and long.startswith("hf-ooo") and long != other


@pytest.mark.parametrize(
    "hf_id",
    [
        "a/b/c",
        "/name-7B",
        "org/",
        "-org/name-7B",
        "org/name--7B",
        "org/na me-7B",
        "Qwen/Qwen2.5-7B-Instruct-GGUF",
        "mlx-community/Qwen2.5-7B-Instruct-mlx",
    ],
)
def test_what_is_no_id_vllm_serves_is_refused(hf_id: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        hf_model_parse(hf_id, param="model_id")
    assert refused.value.param == "model_id" and hf_id in refused.value.message


@pytest.mark.parametrize(
    ("setting", "hf_id", "allowed"),
    [
        ("off", "Qwen/Qwen2.5-7B-Instruct", False),
        ("any", "someone/Their-1B", True),
        ("Qwen, meta-llama", "qwen/Qwen2.5-7B-Instruct", True),  # org names match whatever their case
        ("Qwen,meta-llama", "mistralai/Mistral-7B-v0.1", False),
    ],
)
def test_the_operator_setting_decides(settings: Any, setting: str, hf_id: str, allowed: bool) -> None:
    settings.GPUCLOUD_HF_MODELS = setting
    model = hf_model_parse(hf_id, param="model")
    if allowed:
        hf_check_allowed(model, param="model")
        return
    with pytest.raises(HfModelNotAllowed) as refused:
        hf_check_allowed(model, param="model")
    assert refused.value.status == 403 and "GPUCLOUD_HF_MODELS" in refused.value.message
