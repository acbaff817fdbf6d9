"""Issue 17: pod templates through /api/v1/templates. The built-ins (PyTorch with JupyterLab, vLLM,
Ubuntu with SSH, the local provider's shell) are listed for everyone and cannot be deleted; an org's
own are checked as a pod's settings are and seen by nobody else. POST /pods with `template` starts
from its settings, and each field the body gives wins."""

from __future__ import annotations

from typing import Any

from django.test import Client

from deployments.models import Deployment, Pod, Template, Volume
from fleet.models import Instance
from tests.deployments.test_pods import USD, call
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.personas import Persona

BUILTIN_IDS = ["pytorch-jupyter", "vllm", "ubuntu-ssh", "jupyterlab", "llama-cpp", "gpucloud-shell"]
MINE = {"name": "diary", "description": "keeps a diary", "image": "gpucloud/shell", "command": ["sleep", "600"],
        "ports": ["8888/http"], "env": {"MODE": "diary"}, "container_disk_gb": 5, "volume_mount_path": "/data",
        "volume_size_gb": 3}  # fmt: skip


def test_the_built_ins_are_listed_for_everyone_and_cannot_be_deleted(
    client: Client, alice: Persona, charlie: Persona
) -> None:
    for persona in (alice, charlie):
        listed = call(client, persona, "get", "/templates").json()
        assert [t["id"] for t in listed] == BUILTIN_IDS
        assert all(t["builtin"] is True and t["created_at"] is None for t in listed)
    vllm = call(client, alice, "get", "/templates/vllm").json()
    assert (vllm["image"], vllm["ports"], vllm["generated_env"]) == ("vllm/vllm-openai:v0.11.0", ["8000/http"],
                                                                      ["VLLM_API_KEY"])  # fmt: skip
    jupyter = call(client, alice, "get", "/templates/pytorch-jupyter").json()
    assert jupyter["image"] == "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
    assert jupyter["ports"] == ["8888/http", "22/tcp"] and jupyter["generated_env"] == ["JUPYTER_TOKEN"]
    assert "jupyter lab" in jupyter["command"][-1] and jupyter["volume_size_gb"] == 20
    assert call(client, alice, "get", "/templates/ubuntu-ssh").json()["ports"] == ["22/tcp"]
    shell = call(client, alice, "get", "/templates/gpucloud-shell").json()
    assert (shell["image"], shell["ports"]) == ("gpucloud/shell", ["22/tcp"])

    refused = call(client, alice, "delete", "/templates/vllm")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "vllm is a built-in template: it cannot be deleted (nor changed)."
    assert [t["id"] for t in call(client, alice, "get", "/templates").json()] == BUILTIN_IDS


def test_an_org_saves_reads_and_deletes_its_own_templates_and_no_one_else_sees_them(
    client: Client, alice: Persona, bob: Persona, charlie: Persona
) -> None:
    created = call(client, alice, "post", "/templates", MINE)
    assert created.status_code == 201, created.content
    shown = created.json()
    template_id = shown.pop("id")
    assert template_id.startswith("tpl_") and shown.pop("created_at") is not None
    assert shown == {**MINE, "args": [], "builtin": False, "generated_env": []}
    assert call(client, bob, "get", f"/templates/{template_id}").json()["name"] == "diary"  # a teammate sees it
    assert [t["id"] for t in call(client, alice, "get", "/templates").json()] == [*BUILTIN_IDS, template_id]

    assert [t["id"] for t in call(client, charlie, "get", "/templates").json()] == BUILTIN_IDS
    for method in ("get", "delete"):
        hidden = call(client, charlie, method, f"/templates/{template_id}")
        assert hidden.status_code == 404 and hidden.json()["error"]["param"] == "template_id"
    assert Template.objects.filter(pk=template_id).exists()  # charlie's delete changed nothing

    assert call(client, alice, "delete", f"/templates/{template_id}").status_code == 204
    assert call(client, alice, "get", f"/templates/{template_id}").status_code == 404
    assert not Template.objects.exists()


def test_bad_template_settings_are_refused_with_the_reason_and_nothing_saved(client: Client, alice: Persona) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**MINE, "image": "Not An Image!"}, 400, "image"), ({**MINE, "name": "  "}, 400, "name"),
        ({**MINE, "ports": ["8888"]}, 400, "ports"), ({**MINE, "ports": ["80/http", "80/tcp"]}, 400, "ports"),
        ({**MINE, "env": {"1BAD": "x"}}, 400, "env"), ({**MINE, "container_disk_gb": 0}, 400, "container_disk_gb"),
        ({**MINE, "volume_mount_path": "/etc/x"}, 400, "volume_mount_path"), ({**MINE, "args": [""]}, 400, "args"),
        ({**MINE, "volume_size_gb": 0}, 400, "volume_size_gb"), ({**MINE, "env": {"A": 1}}, 422, "env.A"),
    ]  # fmt: skip
    for body, status, param in cases:
        answer = call(client, alice, "post", "/templates", body)
        assert answer.status_code == status, (body, answer.content)
        assert answer.json()["error"].get("param") == param, (body, answer.content)
    assert not Template.objects.exists()


def test_a_pod_from_a_template_takes_its_settings_and_each_field_the_body_gives_wins(
    client: Client, alice: Persona, fleet: str
) -> None:
    fund(alice.org, 10 * USD)
    template_id = call(client, alice, "post", "/templates", MINE).json()["id"]
    where = {"gpu_type": "cpu", "region": "local"}

    made = call(client, alice, "post", "/pods", {"template": template_id, **where})
    assert made.status_code == 201, made.content
    pod = made.json()
    assert (pod["name"], pod["image"], pod["command"], pod["args"], pod["ports"], pod["env"]) == (
        "diary", "gpucloud/shell", ["sleep", "600"], [], ["8888/http"], {"MODE": "diary"})  # fmt: skip
    assert pod["container_disk_gb"] == 5 and pod["template"] == template_id
    assert (pod["volume"]["size_gb"], pod["volume"]["mount_path"]) == (3, "/data")  # its suggested volume
    assert Pod.objects.get(pk=pod["id"]).template == template_id

    body = {"template": template_id, **where, "name": "mine", "env": {}, "volume": None, "ports": ["22/tcp"],
            "command": ["sleep", "60"], "container_disk_gb": 7, "volume_mount_path": "/workspace"}  # fmt: skip
    own = call(client, alice, "post", "/pods", body).json()
    assert (own["name"], own["env"], own["volume"], own["ports"], own["command"], own["container_disk_gb"]) == (
        "mine", {}, None, ["22/tcp"], ["sleep", "60"], 7)  # fmt: skip
    assert own["image"] == "gpucloud/shell" and own["template"] == template_id

    shell = call(client, alice, "post", "/pods", {"template": "gpucloud-shell", **where}).json()
    assert (shell["image"], shell["ports"], shell["volume"], shell["template"]) == (
        "gpucloud/shell", ["22/tcp"], None, "gpucloud-shell")  # fmt: skip
    plain = call(client, alice, "post", "/pods", {"image": "gpucloud/shell", **where}).json()
    assert plain["template"] is None and plain["name"] == "gpucloud/shell"


def test_an_unknown_or_foreign_template_or_none_and_no_image_is_refused_and_nothing_made(
    client: Client, alice: Persona, charlie: Persona, fleet: str
) -> None:
    fund(alice.org, 10 * USD)
    theirs = call(client, charlie, "post", "/templates", MINE).json()["id"]
    where = {"gpu_type": "cpu", "region": "local"}
    for template in ("tpl_nope", theirs):
        answer = call(client, alice, "post", "/pods", {"template": template, **where})
        assert answer.status_code == 404 and answer.json()["error"] == {
            "type": "not_found_error", "param": "template",
            "message": f"No template {template!r}; see GET /api/v1/templates.",
        }  # fmt: skip
    bare = call(client, alice, "post", "/pods", where)
    assert bare.status_code == 400 and bare.json()["error"]["param"] == "image"
    cannot = call(client, alice, "post", "/pods", {"template": "pytorch-jupyter", **where})
    assert cannot.status_code == 400 and cannot.json()["error"]["param"] == "image"  # no container runtime here
    assert not Deployment.objects.exists() and not Volume.objects.exists() and not Instance.objects.exists()


def test_a_jupyter_pod_from_the_built_in_gets_a_token_of_its_own_on_a_cloud(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 20 * USD)
    body = {"template": "pytorch-jupyter", "gpu_type": "h100", "region": "atl1", "volume": None}
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 3}}):
        first = call(client, alice, "post", "/pods", body, django_capture_on_commit_callbacks)
        assert first.status_code == 201, first.content
        second = call(client, alice, "post", "/pods", body, django_capture_on_commit_callbacks).json()
        given = call(client, alice, "post", "/pods", {**body, "env": {"JUPYTER_TOKEN": "mine", "X": "1"}},
                     django_capture_on_commit_callbacks).json()  # fmt: skip
        shown = call(client, alice, "get", f"/pods/{first.json()['id']}").json()
        spec = sim_cloud.LAUNCHED[shown["machine"]["id"]]
        assert (spec.image, spec.ports) == ("runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04", [8888, 22])
        assert spec.command == ["bash", "-c", shown["command"][-1]] and "jupyter lab" in shown["command"][-1]
        # JupyterLab reads JUPYTER_TOKEN from its environment: on its command line, `ps` would show it to anyone
        assert "JUPYTER_TOKEN" not in shown["command"][-1] and "IdentityProvider.token" not in shown["command"][-1]
        token = spec.env["JUPYTER_TOKEN"]
        assert len(token) >= 32 and shown["env"] == {"JUPYTER_TOKEN": token}
        assert second["env"]["JUPYTER_TOKEN"] not in ("", token)  # each pod its own
        assert given["env"] == {"JUPYTER_TOKEN": "mine", "X": "1"}
