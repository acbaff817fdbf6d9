"""Pod templates (reference/003): an image and its settings saved under a name, the defaults of a pod
created from it. An organization saves its own (Template rows, checked as a pod's settings are); the
built-ins below are code, the same for everyone, read-only, with stable ids.

A pod created from a template takes the template's image, command, args, ports, env, container disk,
volume mount path and name; a field the body gives wins whole, even empty (`"env": {}` runs without
the template's variables, `"volume": null` without its volume). When the body names no volume
(neither `volume` nor `volume_id`), the template's suggested size makes a new one. The secrets a
built-in's command reads (JupyterLab's token, vLLM's API key) are made for each pod unless its env
sets them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from deployments.models import Template
from deployments.pod_settings import NewVolume, PodSettings, container_settings_check
from deployments.volumes import volume_size_check
from fleet.providers.containers import VLLM_IMAGE, VLLM_SERVER
from gpucloud.core.errors import InvalidRequest, PermissionDenied

NAME_MAX = 100
DESCRIPTION_MAX = 1000
# The fields of PodSettings a template gives; the body's own win.
TEMPLATE_FIELDS = ("image", "command", "args", "ports", "env", "container_disk_gb", "volume_mount_path")


@dataclass(frozen=True)
class PodTemplate:
    id: str
    name: str
    image: str
    description: str = ""
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    container_disk_gb: int = 20
    volume_mount_path: str = "/workspace"
    volume_size_gb: int | None = None
    secret_env: tuple[str, ...] = ()  # made for each pod (a random token) unless its env sets them
    builtin: bool = False
    created_at: datetime | None = None


# Under the platform's proxy prefix (which RunPod's own proxy URL also serves). Its token is the pod's
# JUPYTER_TOKEN, which Jupyter reads from its environment: on its command line `ps` would show it to anyone.
_JUPYTER = (
    "exec jupyter lab --ip=0.0.0.0 --port=8888 --no-browser --allow-root --ServerApp.root_dir=/workspace "
    '--ServerApp.base_url="${GPUCLOUD_PROXY_PATH}8888/" --ServerApp.allow_origin="*"'
)
_SSHD = (
    "set -e; command -v sshd >/dev/null || (apt-get update && apt-get install -y --no-install-recommends "
    'openssh-server); mkdir -p /run/sshd /root/.ssh; printf "%s\\n" "$PUBLIC_KEY" >> /root/.ssh/authorized_keys; '
    "chmod 700 /root/.ssh; chmod 600 /root/.ssh/authorized_keys; exec /usr/sbin/sshd -D -e"
)
BUILTINS: dict[str, PodTemplate] = {
    t.id: t
    for t in (
        PodTemplate(
            id="pytorch-jupyter", name="PyTorch 2.4 with JupyterLab",
            image="runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04",
            description="PyTorch 2.4, Python 3.11, CUDA 12.4. JupyterLab on port 8888 (its token is JUPYTER_TOKEN, "
            "made for each pod), SSH on 22, the volume at /workspace.",
            command=["bash", "-c", _JUPYTER], ports=["8888/http", "22/tcp"],
            container_disk_gb=50, volume_size_gb=20,
            secret_env=("JUPYTER_TOKEN",), builtin=True,
        ),
        PodTemplate(
            id="vllm", name="vLLM OpenAI-compatible server", image=VLLM_IMAGE,
            description="vLLM 0.11 serving a Hugging Face model (change --model in args) with the OpenAI API on "
            "port 8000; clients send VLLM_API_KEY, made for each pod, as their bearer token.",
            command=VLLM_SERVER, args=["--model", "Qwen/Qwen2.5-7B-Instruct", "--port", "8000"],
            ports=["8000/http"], env={"HF_HOME": "/workspace/huggingface"}, container_disk_gb=50, volume_size_gb=50,
            secret_env=("VLLM_API_KEY",), builtin=True,
        ),
        PodTemplate(
            id="ubuntu-ssh", name="Ubuntu 22.04 with SSH", image="ubuntu:22.04",
            description="A plain Ubuntu machine: sshd on port 22 lets in the pod's keys and the organization's saved "
            "ones (PUBLIC_KEY).",
            command=["bash", "-c", _SSHD], ports=["22/tcp"], builtin=True,
        ),
        PodTemplate(
            id="jupyterlab", name="JupyterLab", image="gpucloud/jupyterlab",
            description="JupyterLab on port 8888 (its token is JUPYTER_TOKEN, made for each pod) with SSH on 22 and "
            "the volume at /workspace. The local provider runs it (JupyterLab from PyPI, in its sandbox).",
            ports=["8888/http", "22/tcp"], container_disk_gb=10, volume_size_gb=5,
            secret_env=("JUPYTER_TOKEN",), builtin=True,
        ),
        PodTemplate(
            id="llama-cpp", name="llama.cpp with SmolLM2", image="gpucloud/llama-cpp",
            description="llama.cpp's OpenAI-compatible server with SmolLM2-135M on port 8080, under the platform's "
            "proxy (/pods/<id>/ports/8080/v1/...); clients send LLAMA_API_KEY, made for each pod, as their bearer "
            "token. The local provider runs it.",
            ports=["8080/http"], container_disk_gb=5, secret_env=("LLAMA_API_KEY",), builtin=True,
        ),
        PodTemplate(
            id="gpucloud-shell", name="gpucloud shell", image="gpucloud/shell",
            description="What the local provider runs (it has no container runtime): a Python shell machine in a "
            "sandbox, reached over SSH, or running the command you give.",
            ports=["22/tcp"], container_disk_gb=10, builtin=True,
        ),
    )
}  # fmt: skip


def pod_template_of(row: Template) -> PodTemplate:
    return PodTemplate(
        id=row.pk, name=row.name, image=row.image, description=row.description, command=row.command, args=row.args,
        ports=row.ports, env=row.env, container_disk_gb=row.container_disk_gb,
        volume_mount_path=row.volume_mount_path, volume_size_gb=row.volume_size_gb, created_at=row.created_at,
    )  # fmt: skip


def template_create(*, principal: Principal, asked: PodTemplate) -> PodTemplate:
    """Save the organization's template after checking its settings as a pod's are (400 naming the field)."""
    principal.require(CAN_WRITE, "saving templates")
    name = asked.name.strip()
    if not name or len(name) > NAME_MAX:
        raise InvalidRequest(f"A template needs a name of 1 to {NAME_MAX} characters.", param="name")
    if len(asked.description) > DESCRIPTION_MAX:
        raise InvalidRequest(f"description is at most {DESCRIPTION_MAX} characters.", param="description")
    container_settings_check(
        image=asked.image, container_disk_gb=asked.container_disk_gb, ports=asked.ports, env=asked.env,
        command=asked.command, args=asked.args, volume_mount_path=asked.volume_mount_path,
    )  # fmt: skip
    if asked.volume_size_gb is not None:
        volume_size_check(asked.volume_size_gb, param="volume_size_gb")
    row = Template.objects.create(
        org=principal.org, name=name, description=asked.description, image=asked.image, command=asked.command,
        args=asked.args, ports=asked.ports, env=asked.env, container_disk_gb=asked.container_disk_gb,
        volume_mount_path=asked.volume_mount_path, volume_size_gb=asked.volume_size_gb, created_by=principal.user,
    )  # fmt: skip
    return pod_template_of(row)


def template_delete(*, principal: Principal, template: PodTemplate) -> None:
    """Delete the organization's template; pods made from it keep their settings (and its id)."""
    if template.builtin:
        raise PermissionDenied(f"{template.id} is a built-in template: it cannot be deleted (nor changed).")
    principal.require(CAN_WRITE, "deleting templates")
    Template.objects.filter(org=principal.org, pk=template.id).delete()


def pod_settings_of(template: PodTemplate | None, given: dict[str, Any]) -> PodSettings:
    """The settings a pod create asks for: the template's (when it names one) under what the body gave
    (`given`: the PodSettings fields the body set)."""
    defaults: dict[str, Any] = {"name": ""}
    if template is not None:
        defaults = {name: getattr(template, name) for name in ("name", *TEMPLATE_FIELDS)}
        if template.volume_size_gb and "new_volume" not in given and "volume_id" not in given:
            defaults["new_volume"] = NewVolume(size_gb=template.volume_size_gb)
    merged = {**defaults, **given, "template": template.id if template else ""}
    if merged.get("image") is None:
        raise InvalidRequest("Say the image, or a template to start from (GET /api/v1/templates).", param="image")
    asked = PodSettings(**merged)
    made = {
        name: secrets.token_urlsafe(24) for name in (template.secret_env if template else ()) if not asked.env.get(name)
    }
    return replace(asked, env={**asked.env, **made}) if made else asked
