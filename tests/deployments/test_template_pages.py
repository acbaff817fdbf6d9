"""Issue 17's templates page: the built-ins (read-only, marked) and the org's own with their settings
(env names, never values), each a start for a new pod; saving through the form (refusals beside the
field they name, nothing saved), deleting the org's own (never a built-in), other orgs 404, viewers
see but cannot act."""

from __future__ import annotations

import pytest

from accounts.models import Membership
from accounts.principal import Principal
from accounts.roles import Role
from deployments.models import Template
from deployments.pod_templates import BUILTINS, PodTemplate, template_create
from tests.support.pages import signed_in
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db
FORM = {"name": "diary", "description": "keeps a diary", "image": "gpucloud/shell", "ports": "8888/http 22/tcp",
        "env": "MODE=secret-mode-value\nTOKEN=a=b\n", "command": "python3 -c 'print(1)'", "container_disk_gb": "5",
        "volume_mount_path": "/data", "volume_size_gb": "3"}  # fmt: skip


def saved(persona: Persona, name: str = "diary") -> PodTemplate:
    owner = Principal(user=persona.user, org=persona.org, role=Role.OWNER)
    asked = PodTemplate(id="", name=name, image="gpucloud/shell", command=["sleep", "600"], ports=["8888/http"],
                        env={"MODE": "hidden-value-42"}, container_disk_gb=7, volume_size_gb=4)  # fmt: skip
    return template_create(principal=owner, asked=asked)


def test_the_page_lists_the_built_ins_and_the_orgs_own_without_env_values(alice: Persona, charlie: Persona) -> None:
    mine, theirs = saved(alice), saved(charlie, "not-alices")
    page = signed_in(alice).get("/templates/").content.decode()
    for builtin in BUILTINS.values():
        assert f'<tr id="{builtin.id}">' in page and f'/pods/new?template={builtin.id}"' in page
    assert page.count('<span class="badge">built-in</span>') == len(BUILTINS)
    assert "HF_HOME" in page and "/workspace/huggingface" not in page  # vLLM's env: the name, not the value
    assert '<span class="mono">JUPYTER_TOKEN</span> <span class="muted">(made for each pod)</span>' in page
    assert f'<tr id="{mine.id}">' in page and f'href="/pods/new?template={mine.id}"' in page
    assert '<span class="mono">MODE</span>' in page and "hidden-value-42" not in page
    assert "sleep 600" in page and "7 GB" in page and "4 GB volume at" in page
    assert f"/templates/{mine.id}/delete" in page and page.count(">Delete</button>") == 1  # only its own
    assert "not-alices" not in page and theirs.id not in page
    assert ">Templates</a>" in page and 'href="/templates/" aria-current="page"' in page


def test_saving_through_the_form_makes_the_template_and_redirects(alice: Persona) -> None:
    client = signed_in(alice)
    response = client.post("/templates/create", FORM)
    template = Template.objects.get(org=alice.org)
    assert response.status_code == 302 and response["Location"] == f"/templates/#{template.pk}"
    assert (template.name, template.description, template.image) == ("diary", "keeps a diary", "gpucloud/shell")
    assert template.command == ["python3", "-c", "print(1)"] and template.ports == ["8888/http", "22/tcp"]
    assert template.env == {"MODE": "secret-mode-value", "TOKEN": "a=b"}
    assert (template.container_disk_gb, template.volume_mount_path, template.volume_size_gb) == (5, "/data", 3)
    page = client.get(response["Location"]).content.decode()
    assert "Saved template diary" in page and "secret-mode-value" not in page and "TOKEN" in page


def test_no_suggested_volume_is_none(alice: Persona) -> None:
    assert signed_in(alice).post("/templates/create", {**FORM, "volume_size_gb": ""}).status_code == 302
    assert Template.objects.get().volume_size_gb is None


@pytest.mark.parametrize(
    ("changed", "status", "field", "message"),
    [
        ({"name": "  "}, 400, "name", "A template needs a name of 1 to 100 characters."),
        ({"image": "Not An Image!"}, 400, "image", "Not An Image!"),
        ({"ports": "8888"}, 400, "ports", "is not a port"),
        ({"env": "no equals sign"}, 400, "env", "write one variable a line, as NAME=value."),
        ({"env": "1BAD=x"}, 400, "env", "1BAD"),
        ({"command": "echo 'unclosed"}, 400, "command", "does not parse as a shell line"),
        ({"container_disk_gb": "lots"}, 400, "container_disk_gb", "is not a whole number."),
        ({"volume_mount_path": "/etc/x"}, 400, "volume_mount_path", "/etc/x"),
        ({"volume_size_gb": "0"}, 400, "volume_size_gb", "volume_size_gb"),
    ],
)
def test_a_refusal_shows_the_message_by_its_field_keeps_what_was_typed_and_saves_nothing(
    alice: Persona, changed: dict[str, str], status: int, field: str, message: str
) -> None:
    response = signed_in(alice).post("/templates/create", {**FORM, **changed})
    page = response.content.decode()
    assert response.status_code == status, page
    escaped = message.replace("'", "&#x27;")
    error_at = page.index('id="create-error" role="alert">')
    assert escaped in page[error_at : page.index("</p>", error_at)], page[error_at : error_at + 300]
    # the message sits right after its own field's input, which is marked invalid
    field_at = page.index(f'name="{field}"')
    assert page.index('aria-invalid="true"', field_at) < error_at and field_at < error_at
    assert page.count('aria-invalid="true"') == 1
    assert 'value="diary"' in page or field == "name"  # what was typed stays
    assert not Template.objects.exists()


def test_deleting_its_own_template_from_the_page(alice: Persona) -> None:
    mine = saved(alice)
    client = signed_in(alice)
    response = client.post(f"/templates/{mine.id}/delete")
    assert response.status_code == 302 and response["Location"] == "/templates/"
    assert not Template.objects.exists()
    assert "Deleted template diary" in client.get("/templates/").content.decode()


def test_a_built_in_cannot_be_deleted_even_by_a_forged_post(alice: Persona) -> None:
    saved(alice)
    client = signed_in(alice)
    page = client.get("/templates/").content.decode()
    assert "/templates/vllm/delete" not in page and page.count(">Delete</button>") == 1
    response = client.post("/templates/vllm/delete")
    assert response.status_code == 403
    assert 'id="error-vllm" role="alert">vLLM OpenAI-compatible server: vllm is a built-in template' in (
        response.content.decode()
    )
    assert Template.objects.count() == 1


def test_other_orgs_templates_are_404(alice: Persona, charlie: Persona) -> None:
    mine = saved(alice)
    stranger = signed_in(charlie)
    assert stranger.post(f"/templates/{mine.id}/delete").status_code == 404
    assert stranger.post("/templates/tpl_nope/delete").status_code == 404
    assert stranger.get(f"/pods/new?template={mine.id}").status_code == 404
    assert Template.objects.filter(pk=mine.id).exists()


def test_viewers_see_the_templates_but_cannot_save_or_delete(alice: Persona, bob: Persona) -> None:
    mine = saved(alice)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    viewer = signed_in(bob)
    page = viewer.get("/templates/").content.decode()
    assert f'<tr id="{mine.id}">' in page and "pytorch-jupyter" in page
    assert "Save a template" not in page and ">Delete</button>" not in page and "Create pod from it" not in page
    for response in (viewer.post(f"/templates/{mine.id}/delete"), viewer.post("/templates/create", FORM)):
        assert response.status_code == 403 and "needs member or higher" in response.content.decode()
    assert list(Template.objects.values_list("pk", flat=True)) == [mine.id]


def test_the_form_addresses_answer_a_get_with_the_page(alice: Persona) -> None:
    client = signed_in(alice)
    assert client.get("/templates/create")["Location"] == "/templates/"
    assert client.get("/templates/vllm/delete")["Location"] == "/templates/"
