"""What a launch runs as a container, for every driver that runs images (Kubernetes and the GPU
clouds): the engine the catalog names, started with the model, listening on one port, refusing
requests without the instance's secret; or, for a custom container, the spec's own image and command.

The secret never appears in a command line: each engine reads it from an environment variable of its
own (`key_env`: vLLM's VLLM_API_KEY, llama.cpp's LLAMA_API_KEY), which each driver fills in its own
way (a Kubernetes Secret, a cloud's container environment). A custom container gets it as
GPUCLOUD_ENGINE_API_KEY, to check if it likes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleet.providers.base import InstanceSpec, ProviderError

ENGINE_PORT = 8000  # where the built-in engines listen
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"  # a CUDA build: NVIDIA GPUs
LLAMACPP_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-cuda"  # llama.cpp's CUDA server (":server" is CPU-only)
LLAMACPP_ROCM_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-rocm"
# AMD's ROCm build of vLLM 0.11.2 (the release our arguments are written for). It has no server
# entry point of its own, so the container starts vLLM's OpenAI server explicitly.
VLLM_ROCM_IMAGE = "rocm/vllm:rocm7.0.0_vllm_0.11.2_20251210"
VLLM_SERVER = ["python3", "-m", "vllm.entrypoints.openai.api_server"]
CUSTOM_KEY_ENV = "GPUCLOUD_ENGINE_API_KEY"


@dataclass(frozen=True)
class ContainerRun:
    """How the container runs: image, entry point (None: the image's own), arguments, the port it
    serves on, the variable it reads its secret from, and whether it answers GET /health (the built-in
    engines do; a custom container is ready when its port accepts connections)."""

    image: str
    command: list[str] | None
    args: list[str]
    port: int
    key_env: str
    http_health: bool = True


@dataclass(frozen=True)
class Images:
    """The engine images a provider runs (an operator may pin or mirror them)."""

    vllm: str = VLLM_IMAGE
    llamacpp: str = LLAMACPP_IMAGE
    vllm_command: tuple[str, ...] = ()  # the entry point to start vLLM with (empty: the image's own)

    @classmethod
    def amd(cls, *, vllm: str = VLLM_ROCM_IMAGE, llamacpp: str = LLAMACPP_ROCM_IMAGE) -> Images:
        """ROCm builds for AMD GPUs (an operator may name others)."""
        return cls(vllm=vllm, llamacpp=llamacpp, vllm_command=tuple(VLLM_SERVER))


def container_run(spec: InstanceSpec, *, images: Images, gpus: int, provider: str) -> ContainerRun:
    """The container for the spec's engine; an engine or model `provider` cannot run is a permanent
    ProviderError (the replica fails with this message)."""
    params = {**spec.model, **spec.engine_args}
    if spec.engine == "vllm":
        return _vllm(spec, params, images, gpus)
    if spec.engine == "llama.cpp":
        return _llamacpp(spec, params, images, provider)
    if spec.engine == "container":
        return _custom(spec)
    raise ProviderError(f"The {provider} provider cannot run the {spec.engine!r} engine.", permanent=True)


def _vllm(spec: InstanceSpec, params: dict[str, Any], images: Images, gpus: int) -> ContainerRun:
    if not params.get("hf_repo"):
        raise ProviderError("A vLLM model needs an hf_repo.", permanent=True)
    args = ["--model", str(params["hf_repo"]), "--served-model-name", spec.served_model_name,
            "--port", str(ENGINE_PORT)]  # fmt: skip
    if params.get("dtype"):
        args += ["--dtype", str(params["dtype"])]
    if params.get("max_model_len"):
        args += ["--max-model-len", str(params["max_model_len"])]
    if params.get("max_num_seqs"):  # a preset's batch size
        args += ["--max-num-seqs", str(params["max_num_seqs"])]
    if params.get("task"):  # "embed" for embedding models
        args += ["--task", str(params["task"])]
    if params.get("quantization"):
        # The cost preset asks for 8-bit weights; vLLM's on-load 8-bit quantization is FP8 (it has
        # no dynamic int8 for dense models), so "int8" becomes --quantization fp8.
        args += ["--quantization", "fp8" if params["quantization"] == "int8" else str(params["quantization"])]
    if gpus > 1:
        args += ["--tensor-parallel-size", str(gpus)]
    return ContainerRun(images.vllm, list(images.vllm_command) or None, args, ENGINE_PORT, "VLLM_API_KEY")


def _llamacpp(spec: InstanceSpec, params: dict[str, Any], images: Images, provider: str) -> ContainerRun:
    if params.get("hf_repo"):
        source = ["--hf-repo", str(params["hf_repo"])]
        source += ["--hf-file", str(params["hf_file"])] if params.get("hf_file") else []
    elif params.get("url"):
        source = ["--model-url", str(params["url"])]
    else:
        raise ProviderError(f"A llama.cpp model on {provider} needs an hf_repo or a url to its GGUF.", permanent=True)
    args = [
        *source,
        "--alias", spec.served_model_name,
        "--host", "0.0.0.0", "--port", str(ENGINE_PORT),  # noqa: S104 - inside the container, behind the provider's network
        "--ctx-size", str(params.get("ctx_size", 4096)), "--n-gpu-layers", "999",
    ]  # fmt: skip
    if params.get("embedding"):
        args.append("--embedding")
    return ContainerRun(images.llamacpp, None, args, ENGINE_PORT, "LLAMA_API_KEY")


def _custom(spec: InstanceSpec) -> ContainerRun:
    """The owner's image: its command (or the image's own) with its arguments; `port` is its first HTTP
    port (the others are the spec's ports, which each driver publishes its own way)."""
    if not spec.image:
        raise ProviderError("A container instance needs an image.", permanent=True)
    http = [p for p in spec.ports if p not in spec.tcp_ports]
    port = http[0] if http else spec.ports[0] if spec.ports else ENGINE_PORT
    command = list(spec.command) if spec.command else None
    return ContainerRun(spec.image, command, list(spec.args), port, CUSTOM_KEY_ENV, http_health=False)


def container_env(spec: InstanceSpec, run: ContainerRun, *, hf_token: str = "") -> dict[str, str]:
    """The environment a cloud container starts with: the secret under the engine's own variable,
    the operator's Hugging Face token for gated models, and the spec's own variables."""
    env = {run.key_env: spec.api_key}
    if hf_token:
        env["HF_TOKEN"] = hf_token
    if spec.ssh_public_keys:  # the images' convention (RunPod's, our templates'): sshd reads PUBLIC_KEY
        env["PUBLIC_KEY"] = "\n".join(spec.ssh_public_keys)
    return {**spec.env, **env}  # the spec's own variables cannot replace the secret
