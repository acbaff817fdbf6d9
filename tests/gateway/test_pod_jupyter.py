"""Issue 17's done-when, as a test: a Jupyter pod from its template on the local provider, JupyterLab
opened through the platform's proxy (refused without the session or token), a cell run over the
kernel's websocket (through the proxy too) that writes a file to /workspace, on the pod's volume."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.test import Client
from websockets.sync.client import connect

from catalog.models import Provider
from deployments.models import Pod
from gateway import pod_proxy
from tests.support.billing import fund
from tests.support.personas import Persona

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the server thread must see committed rows
    pytest.mark.skipif(
        not (settings.GPUCLOUD_LOCAL_IMAGES_DIR / "jupyterlab" / "bin" / "jupyter").exists(),
        reason="JupyterLab's environment is not built (make builds it before the suite)",
    ),
]
USD = 1_000_000
LAB_START_SECONDS = 60  # JupyterLab's first start imports a lot; this 2-core machine is busy under the suite


def run_cell(ws_url: str, headers: dict[str, str], code: str) -> str:
    """Execute `code` on the kernel (Jupyter's messaging protocol over its websocket); its status."""
    msg_id = uuid.uuid4().hex
    request = {
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }  # fmt: skip
    with connect(ws_url, additional_headers=headers, open_timeout=20) as ws:
        ws.send(json.dumps(request))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=60))
            if message.get("parent_header", {}).get("msg_id") == msg_id and message["msg_type"] == "execute_reply":
                return str(message["content"]["status"])
    raise AssertionError("no execute_reply")


def command_lines() -> list[str]:
    """Every process's command line on this machine, as `ps` shows them to any user."""
    lines = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # it ended meanwhile
            continue
    return lines


def test_jupyterlab_in_a_local_pod_through_the_proxy_runs_a_cell_that_writes_to_the_volume(
    server: str, client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    body = {"template": "jupyterlab", "gpu_type": "cpu", "region": "local"}
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/v1/pods", data=json.dumps(body), content_type="application/json", **alice.auth)
    assert created.status_code == 201, created.content
    pod_id = created.json()["id"]
    pod = Pod.objects.get(pk=pod_id)
    jupyter_token, proxy_token = pod.env["JUPYTER_TOKEN"], pod.proxy_token
    base = f"{server}/pods/{pod_id}/ports/8888"
    entry = {"x-gpucloud-pod-token": proxy_token}

    started = time.monotonic()
    while (
        status := httpx.get(f"{base}/api/status", params={"token": jupyter_token}, headers=entry)
    ).status_code != 200:
        assert time.monotonic() - started < LAB_START_SECONDS, status.text
        pod_proxy.decisions_clear()
        time.sleep(0.5)
    assert httpx.get(f"{base}/api/status", params={"token": jupyter_token}).status_code == 401  # no proxy credentials
    lines = command_lines()  # what `ps` shows anyone on the machine: JupyterLab reads its token from its environment
    assert any("jupyter" in line and " lab " in line for line in lines)
    assert not any(jupyter_token in line for line in lines)
    lab = httpx.get(f"{base}/lab", params={"token": jupyter_token}, headers=entry)
    assert lab.status_code == 200 and "JupyterLab" in lab.text and f"/pods/{pod_id}/ports/8888/" in lab.text

    kernel = httpx.post(f"{base}/api/kernels", params={"token": jupyter_token}, headers=entry, json={}, timeout=60)
    assert kernel.status_code == 201, kernel.text
    channels = f"{base.replace('http://', 'ws://')}/api/kernels/{kernel.json()['id']}/channels?token={jupyter_token}"
    origin = {"Origin": server, **entry}
    code = "import pathlib; pathlib.Path('/workspace/hello.txt').write_text('from a cell')"
    assert run_cell(channels, origin, code) == "ok"
    volumes_dir = Path(Provider.objects.get(slug="local").config["volumes_dir"])
    assert (volumes_dir / pod.volume_id / "data" / "hello.txt").read_text() == "from a cell"  # type: ignore[operator]


def test_the_llama_cpp_image_serves_smollm2_through_the_proxy_for_its_own_key(
    server: str, client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    """The third local image: llama.cpp's OpenAI server (the local engine) with SmolLM2, under the proxy's
    prefix, answering only the pod's own key (LLAMA_API_KEY, made for the pod by its template)."""
    fund(alice.org, 10 * USD)
    body = {"template": "llama-cpp", "gpu_type": "cpu", "region": "local"}
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/api/v1/pods", data=json.dumps(body), content_type="application/json", **alice.auth)
    assert created.status_code == 201, created.content
    pod = Pod.objects.get(pk=created.json()["id"])
    base = f"{server}/pods/{pod.pk}/ports/8080"
    entry = {"x-gpucloud-pod-token": pod.proxy_token}
    keyed = {**entry, "Authorization": f"Bearer {pod.env['LLAMA_API_KEY']}"}  # under a prefix, health wants it too
    started = time.monotonic()
    while httpx.get(f"{base}/health", headers=keyed).status_code != 200:
        assert time.monotonic() - started < LAB_START_SECONDS
        pod_proxy.decisions_clear()
        time.sleep(0.5)
    chat = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 8}
    answered = httpx.post(f"{base}/v1/chat/completions", json=chat, timeout=60, headers=keyed)
    assert answered.status_code == 200, answered.text
    assert answered.json()["choices"][0]["message"]["content"]
    refused = httpx.post(f"{base}/v1/chat/completions", json=chat, timeout=60,
                         headers={**entry, "Authorization": "Bearer not-the-key"})  # fmt: skip
    assert refused.status_code == 401  # the engine's own key check: the proxy token alone does not chat
