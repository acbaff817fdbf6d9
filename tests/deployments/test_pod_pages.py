"""Issue 17's pages for pods: the "Create custom pod" form with its prices from the stored offers,
refusals beside the field they name (nothing created), a pod's page with its machine, cost, volume,
settings (env names, never values) and history, stop / start / terminate from it, pods beside model
deployments in the lists, other orgs 404, viewers see but cannot act."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from accounts.models import Membership
from accounts.principal import Principal
from accounts.roles import Role
from accounts.services import ssh_key_add
from billing.models import Service, UsageMeter
from catalog.models import Provider
from deployments.models import Deployment, Pod, Volume
from fleet.models import Instance
from tests.support.billing import fund
from tests.support.pages import running, running_pod, signed_in
from tests.support.personas import Persona
from tests.support.ssh_keys import ssh_line

pytestmark = pytest.mark.django_db
USD = 1_000_000
FORM = {"gpu_type": "cpu", "gpu_count": "1", "region": "local", "image": "gpucloud/shell", "cloud_type": "any",
        "container_disk_gb": "20", "storage": "none", "volume_size": "20", "mount_path": "/workspace"}  # fmt: skip


def test_the_form_offers_the_gpus_with_offers_and_estimates_from_the_stored_prices(
    alice: Persona, catalog: None
) -> None:
    page = signed_in(alice).get("/pods/new").content.decode()
    assert '<option value="cpu" selected>CPU (this machine)</option>' in page
    assert '<option value="h100"' not in page  # in the catalog, but nothing offers it here
    assert '<option value="local" selected>This machine (local)</option>' in page
    assert '<option value="gpucloud/shell">' in page and "runpod/pytorch:" in page  # the image examples
    # The local machine's offer: $0.05/h on the secure tier, none on community.
    assert 'data-tier="any">$0.05/hr</span>' in page and 'data-tier="secure">$0.05/hr</span>' in page
    assert 'data-tier="community">not offered here</span>' in page
    assert "Estimated cost: <strong>$0.05/hr</strong> ($1.20/day)" in page
    # What billing charges (GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS, _IDLE_: 137 and 274), and x 730 a month
    prices = "$0.000137 per GB-hour while a pod runs on it, $0.000274 while idle"
    assert f'Storage <span class="muted">({prices}: $0.10001 and $0.20002 per GB-month)</span>' in page
    assert f"A volume bills for as long as it exists: {prices}." in page and "running or not" not in page
    assert '"running_gb_hour_micros": 137' in page and '"price": 50000' in page  # the table the script recomputes from


def test_a_refused_form_shows_the_estimate_of_what_was_chosen(alice: Persona, catalog: None) -> None:
    fund(alice.org, USD)
    posted = {**FORM, "storage": "new", "volume_size": "100", "image": "NOPE"}
    page = signed_in(alice).post("/pods/create", posted).content.decode()
    # GPU $0.05/h + 100 GB at $0.000137/GB-h (the running pod's price) = $0.0637/h, $1.5288/day
    assert "Estimated cost: <strong>$0.0637/hr</strong> ($1.5288/day): GPU $0.05/hr + storage $0.0137/hr" in page
    idle = Volume.objects.create(org=alice.org, name="data", size_gb=50, region_id="local", provider="local", tag="t",
                                 status="available", hourly_price_micros=50 * 274)  # fmt: skip
    posted = {**posted, "storage": "existing", "volume_id": idle.pk}
    page = signed_in(alice).post("/pods/create", posted).content.decode()
    # It bills the idle price now; once the pod runs on it, 50 GB at $0.000137/GB-h = $0.00685/h
    assert "Estimated cost: <strong>$0.05685/hr</strong> ($1.3644/day): GPU $0.05/hr + storage $0.00685/hr" in page
    assert f'"{idle.pk}": {{"region": "local", "hour": 6850}}' in page  # what the script adds for it


def test_creating_through_the_form_makes_the_pod_and_goes_to_its_page(alice: Persona, catalog: None) -> None:
    fund(alice.org, 10 * USD)
    posted = {**FORM, "name": "lab", "storage": "new", "volume_size": "5", "mount_path": "/data",
              "ports": "8888/http, 22/tcp", "env": "A=1\nB=two=2\n", "command": "python3 -c 'print(1)'"}  # fmt: skip
    response = signed_in(alice).post("/pods/create", posted)
    deployment = Deployment.objects.get(org=alice.org)
    assert response.status_code == 302 and response["Location"] == f"/pods/{deployment.pk}/"
    pod = Pod.objects.select_related("volume").get(pk=deployment.pk)
    assert (deployment.name, deployment.kind, deployment.gpu_type_id, deployment.region_id) == (
        "lab",
        "pod",
        "cpu",
        "local",
    )
    assert (pod.image, pod.ports, pod.env, pod.command) == (
        "gpucloud/shell",
        ["8888/http", "22/tcp"],
        {"A": "1", "B": "two=2"},
        ["python3", "-c", "print(1)"],
    )
    assert pod.volume is not None and (pod.volume.size_gb, pod.volume_mount_path) == (5, "/data")
    assert deployment.status == "provisioning" and deployment.instances.get().state == "provisioning"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"image": "Not An Image!"}, "image", "is not an image reference"),
        ({"image": "pytorch/pytorch:2.4.0"}, "image", "The local provider has no container runtime"),
        ({"ports": "8888"}, "ports", "is not a port: write it as 8888/http or 22/tcp"),
        ({"env": "NO_EQUALS"}, "env", "write one variable a line, as NAME=value"),
        ({"env": "1BAD=x"}, "env", "is not an environment variable name"),
        ({"gpu_count": "3"}, "gpu_count", "gpu_count must be 1, 2, 4 or 8."),
        ({"gpu_count": "2"}, "gpu_type", "No provider offers 2x CPU (this machine) in local."),
        ({"container_disk_gb": "lots"}, "container_disk_gb", "is not a whole number"),
        ({"container_disk_gb": "0"}, "container_disk_gb", "container_disk_gb must be between 1 and 1024."),
        ({"storage": "new", "volume_size": "0"}, "volume_size", "size_gb must be between 1 and 4096"),
        ({"storage": "new", "mount_path": "/usr/x"}, "mount_path", "A volume cannot be mounted over /usr/x"),
        ({"storage": "existing", "volume_id": "vol_nope"}, "storage", "No volume 'vol_nope'."),
        ({"spot": "on"}, "gpu_type", "No provider offers spot 1x CPU (this machine) in local."),
        ({"spot": "on", "max_price": "0"}, "max_price", "max_price_per_hour_usd must be more than 0."),
        ({"spot": "on", "max_price": "cheap"}, "max_price", "is not a price in dollars"),
        ({"command": "echo 'open"}, "command", "The command does not parse as a shell line"),
        ({"region": "mars"}, "region", "No region 'mars'"),
    ],
)
def test_a_refusal_re_renders_the_form_with_the_message_by_its_field_and_creates_nothing(
    alice: Persona, catalog: None, change: dict[str, str], field: str, message: str
) -> None:
    fund(alice.org, 10 * USD)
    posted = {**FORM, **change}
    response = signed_in(alice).post("/pods/create", posted)
    page = response.content.decode()
    assert response.status_code in (400, 404, 409), page
    start = page.index(f'id="{field}-error"')
    assert message in page[start : page.index("</p>", start)].replace("&#x27;", "'")
    assert f'aria-describedby="{field}-error"' in page or f'{field}-error"' in page
    assert not Deployment.objects.exists() and not Volume.objects.exists() and not Instance.objects.exists()


def test_a_refusal_keeps_what_was_typed(alice: Persona, catalog: None) -> None:
    fund(alice.org, 10 * USD)
    posted = {**FORM, "image": "Bad Image", "ports": "8888/http", "env": "TOKEN=abc", "command": "sleep 5",
              "name": "kept", "container_disk_gb": "33"}  # fmt: skip
    page = signed_in(alice).post("/pods/create", posted).content.decode()
    for shown in ('value="Bad Image"', 'value="8888/http"', ">TOKEN=abc</textarea>", 'value="sleep 5"',
                  'value="kept"', 'value="33"'):  # fmt: skip
        assert shown in page, shown


def test_without_credit_the_form_says_so_above_it(charlie: Persona, catalog: None) -> None:
    response = signed_in(charlie).post("/pods/create", FORM)
    assert response.status_code == 402
    assert 'id="form-error"' in response.content.decode() and "$0.00" in response.content.decode()
    assert not Deployment.objects.exists()


def test_the_pod_page_shows_its_machine_cost_volume_settings_keys_and_history(alice: Persona, catalog: None) -> None:
    owner = Principal(user=alice.user, org=alice.org, role=Role.OWNER)
    saved = ssh_key_add(principal=owner, public_key=ssh_line(comment="team"))
    pod = running_pod(alice, "lab", volume_gb=50)
    own = ssh_line("nistp256", comment="laptop")
    Pod.objects.filter(pk=pod.pk).update(ssh_public_keys=[own])
    page = signed_in(alice).get(f"/pods/{pod.pk}/").content.decode()
    assert "<title>lab · gpucloud</title>" in page
    assert f'id="status-{pod.pk}" class="badge status-active" aria-live="polite">running</span>' in page
    assert '<dd class="mono">gpucloud/shell</dd>' in page and "1 \N{MULTIPLICATION SIGN} CPU (this machine)" in page
    assert f"{pod.instances.get().pk}</span><br>Ready on local" in page
    assert 'data-cost-micros="60000" data-rate-micros="3600000"' in page and "$0.12 billed so far" in page
    assert f'href="/volumes/#{pod.pod.volume_id}">lab volume</a>' in page and "50 GB at" in page
    assert "<code>SECRET_TOKEN</code>" in page and "hunter2" not in page  # names, never values
    assert "sleep 600" in page and "<code>8888/http</code>" in page
    assert saved.fingerprint in page and "saved in the organization" in page and "laptop" in page
    assert "Engine healthy." in page and "Machines" in page  # its history
    assert 'id="connect"' in page and f'href="/pods/{pod.pk}/ports/8888/"' in page  # through the platform's proxy
    assert "ssh -p" not in page and "An SSH command shows here while the pod runs" in page  # no process: no port
    assert f'data-socket="/ws/deployments/{pod.pk}/logs/"' in page  # its output, live (the logs consumer follows pods)
    assert ">Stop</button>" in page and "Terminate…" in page and ">Start</button>" not in page


def test_stop_start_and_terminate_from_the_page_run_a_local_pod(
    alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    client = signed_in(alice)
    posted = {**FORM, "storage": "new", "volume_size": "1", "command": "sleep 600"}
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/pods/create", posted)
    pod_id = created["Location"].split("/")[2]
    assert "running</span>" in client.get(f"/pods/{pod_id}/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        stopped = client.post(f"/pods/{pod_id}/stop")
    assert stopped.status_code == 302 and stopped["Location"] == f"/pods/{pod_id}/"
    page = client.get(f"/pods/{pod_id}/").content.decode()
    assert "stopped</span>" in page and ">Start</button>" in page and ">Stop</button>" not in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/pods/{pod_id}/start")
    assert "running</span>" in client.get(f"/pods/{pod_id}/").content.decode()
    assert Pod.objects.get(pk=pod_id).starts == 2
    again = client.post(f"/pods/{pod_id}/start")  # running: refused on the page, by the buttons
    assert again.status_code == 409 and "only a stopped (or failed) pod starts" in again.content.decode()

    confirm = client.get(f"/pods/{pod_id}/terminate").content.decode()
    assert "Also delete the volume and its data" in confirm
    assert Deployment.objects.get(pk=pod_id).status == "active"  # asking changed nothing
    volume_id = str(Pod.objects.get(pk=pod_id).volume_id)
    with django_capture_on_commit_callbacks(execute=True):
        ended = client.post(f"/pods/{pod_id}/terminate", {"delete_volume": "on"})
    assert ended.status_code == 302
    page = client.get(f"/pods/{pod_id}/").content.decode()
    assert "terminated</span>" in page and ">Start</button>" not in page and "Terminate…" not in page
    assert Volume.objects.get(pk=volume_id).status == "deleted"
    assert not Instance.objects.filter(deployment_id=pod_id).exclude(state="terminated").exists()
    volumes_dir = Path(Provider.objects.get(slug="local").config["volumes_dir"])
    assert not (volumes_dir / volume_id / "data").exists()


def test_terminating_keeps_the_volume_unless_asked(
    alice: Persona, catalog: None, tasks: dict[str, list[str]], django_capture_on_commit_callbacks: Any
) -> None:
    pod = running_pod(alice, volume_gb=5)
    with django_capture_on_commit_callbacks(execute=True):
        signed_in(alice).post(f"/pods/{pod.pk}/terminate")
    assert Pod.objects.get(pk=pod.pk).terminated and Volume.objects.get().status == "available"


def test_other_orgs_pods_are_404(alice: Persona, charlie: Persona, catalog: None) -> None:
    pod = running_pod(alice)
    client = signed_in(charlie)
    for path in (f"/pods/{pod.pk}/", f"/pods/{pod.pk}/terminate"):
        assert client.get(path).status_code == 404, path
    for action in ("stop", "start", "terminate"):
        assert client.post(f"/pods/{pod.pk}/{action}").status_code == 404, action
    assert Deployment.objects.get(pk=pod.pk).status == "active" and not Pod.objects.get(pk=pod.pk).terminated


def test_viewers_see_a_pod_but_cannot_act(alice: Persona, bob: Persona, catalog: None) -> None:
    fund(alice.org, 10 * USD)
    pod = running_pod(alice)
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    client = signed_in(bob)
    page = client.get(f"/pods/{pod.pk}/").content.decode()
    assert "running</span>" in page and ">Stop</button>" not in page and "Terminate…" not in page
    assert "needs member or higher" in page
    for action in ("stop", "terminate"):
        response = client.post(f"/pods/{pod.pk}/{action}")
        assert response.status_code == 403 and "needs member or higher" in response.content.decode()
    assert Deployment.objects.get(pk=pod.pk).status == "active" and not Pod.objects.get(pk=pod.pk).terminated
    form = client.get("/pods/new").content.decode()
    assert "creating pods needs member or higher" in form and 'action="/pods/create"' not in form
    assert client.post("/pods/create", FORM).status_code == 403
    assert Deployment.objects.count() == 1


def test_the_deployment_pages_do_not_serve_pods(alice: Persona, catalog: None) -> None:
    pod = running_pod(alice)
    client = signed_in(alice)
    for path in (f"/deployments/{pod.pk}/", f"/deployments/{pod.pk}/stop", f"/deployments/{pod.pk}/logs"):
        assert client.get(path).status_code == 404, path
    assert client.post(f"/deployments/{pod.pk}/stop").status_code == 404


def test_pods_are_listed_beside_model_deployments_linking_to_their_own_page(alice: Persona, catalog: None) -> None:
    model = running(alice, "chat")
    pod = running_pod(alice, "lab")
    client = signed_in(alice)
    for path in ("/deployments/", "/dashboard/"):
        page = client.get(path).content.decode()
        assert f'<a href="/pods/{pod.pk}/">lab</a>' in page, path
        assert f'<a href="/deployments/{model.pk}/">chat</a>' in page, path
        assert f"/deployments/{pod.pk}/" not in page, path  # no link to the page that 404s
        assert f'id="status-{pod.pk}" class="badge status-active" aria-live="polite">running</span>' in page, path
    listed = client.get("/deployments/").content.decode()
    assert '<td data-label="Kind">Pod</td>' in listed and '<span class="mono">gpucloud/shell</span>' in listed
    pods_only = client.get("/pods/").content.decode()
    assert f'<a href="/pods/{pod.pk}/">lab</a>' in pods_only and ">chat</a>" not in pods_only
    activity = client.get("/dashboard/").content.decode()
    assert f'<a href="/pods/{pod.pk}/">lab is running</a>' in activity


def test_the_volumes_page_lists_price_cost_and_the_pod_on_each(alice: Persona, charlie: Persona, catalog: None) -> None:
    pod = running_pod(alice, "lab", volume_gb=50)
    volume = Volume.objects.get()
    UsageMeter.objects.create(
        org=alice.org, meter_key=f"{volume.pk}:0", service=Service.STORAGE, description="x",
        hourly_price_micros=13_700, started_at=volume.created_at, billed_micros=4_110,
    )  # fmt: skip
    Volume.objects.create(
        org=charlie.org, name="charlies-data", size_gb=1, region_id="local", provider="local", tag="t"
    )
    page = signed_in(alice).get("/volumes/").content.decode()
    row = page[page.index(f'<tr id="{volume.pk}">') :]
    assert "lab volume" in row and "50 GB" in row and "This machine" in row and "Available" in row
    assert '<td class="num" data-label="Price/hr">$0.0137</td>' in row  # 50 GB x $0.000274
    assert '<td class="num" data-label="Cost so far">$0.00411</td>' in row
    assert f'<a href="/pods/{pod.pk}/">lab</a> <span class="muted">(running)</span>' in row
    assert "charlies-data" not in page
    assert ">Delete</button>" not in row  # a pod runs on it
    assert (  # what billing charges (GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS, _IDLE_), and x 730 a month
        "A volume bills for as long as it exists: $0.000137 per GB-hour ($0.10001 per GB-month) while a pod runs on "
        "it, $0.000274 per GB-hour ($0.20002 per GB-month) while idle." in page
    )
    assert "whether a pod runs on it or not" not in page


def test_volumes_are_created_grown_and_deleted_from_the_page(
    alice: Persona, catalog: None, django_capture_on_commit_callbacks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fund(alice.org, 10 * USD)
    monkeypatch.setattr("deployments.volumes.enqueue", lambda *args: None)  # the provider's side is not this test's
    client = signed_in(alice)
    made = client.post("/volumes/create", {"name": "data", "size_gb": "10", "region": "local"})
    volume = Volume.objects.get(org=alice.org)
    assert made.status_code == 302 and made["Location"] == f"/volumes/#{volume.pk}"
    assert (volume.name, volume.size_gb, volume.region_id, volume.status) == ("data", 10, "local", "creating")
    Volume.objects.filter(pk=volume.pk).update(status="available")
    page = client.get("/volumes/").content.decode()
    assert ">Delete</button>" in page and "no pod" in page

    smaller = client.post(f"/volumes/{volume.pk}/grow", {"size_gb": "5"})
    assert smaller.status_code == 400
    assert f'id="error-{volume.pk}" role="alert">data: Volumes only grow: it is 10 GB' in smaller.content.decode()
    assert 'value="5"' in smaller.content.decode() and Volume.objects.get().status == "available"
    grown = client.post(f"/volumes/{volume.pk}/grow", {"size_gb": "20"})
    assert grown.status_code == 302 and Volume.objects.get().target_size_gb == 20

    Volume.objects.filter(pk=volume.pk).update(status="available", target_size_gb=None)
    deleted = client.post(f"/volumes/{volume.pk}/delete")
    assert deleted.status_code == 302 and Volume.objects.get().status == "deleting"


@pytest.mark.parametrize(
    ("posted", "status", "field", "message"),
    [
        ({"name": "", "size_gb": "10", "region": "local"}, 400, "name", "A volume needs a name"),
        ({"name": "d", "size_gb": "0", "region": "local"}, 400, "size_gb", "size_gb must be between 1 and 4096"),
        (
            {"name": "d", "size_gb": "ten", "region": "local"},
            400,
            "size_gb",
            "&#x27;ten&#x27; is not a whole number of GB.",
        ),
        ({"name": "d", "size_gb": "10", "region": "atl1"}, 409, "region", "No provider keeps volumes in atl1."),
    ],
)
def test_a_refused_volume_is_shown_by_the_form_and_nothing_is_made(
    alice: Persona, catalog: None, posted: dict[str, str], status: int, field: str, message: str
) -> None:
    fund(alice.org, 10 * USD)
    response = signed_in(alice).post("/volumes/create", posted)
    page = response.content.decode()
    assert response.status_code == status
    assert f'id="create-error" role="alert">{message}' in page
    assert 'aria-invalid="true" aria-describedby="create-error"' in page and f'value="{posted["size_gb"]}"' in page
    assert not Volume.objects.exists()


def test_other_orgs_volumes_are_404_and_viewers_cannot_change_them(
    alice: Persona, bob: Persona, charlie: Persona, catalog: None
) -> None:
    volume = Volume.objects.create(org=alice.org, name="data", size_gb=10, region_id="local", provider="local",
                                   tag="t", status="available")  # fmt: skip
    stranger = signed_in(charlie)
    assert stranger.post(f"/volumes/{volume.pk}/grow", {"size_gb": "20"}).status_code == 404
    assert stranger.post(f"/volumes/{volume.pk}/delete").status_code == 404
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    viewer = signed_in(bob)
    page = viewer.get("/volumes/").content.decode()
    assert "data" in page and "Create a volume" not in page and ">Delete</button>" not in page
    assert viewer.post(f"/volumes/{volume.pk}/delete").status_code == 403
    assert viewer.post("/volumes/create", {"name": "x", "size_gb": "1", "region": "local"}).status_code == 403
    assert Volume.objects.get().status == "available" and Volume.objects.count() == 1


def test_the_form_starts_from_a_template_and_the_pod_gets_its_secret(
    alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    client = signed_in(alice)
    page = client.get("/pods/new?template=jupyterlab").content.decode()
    assert 'value="gpucloud/jupyterlab"' in page and 'value="8888/http 22/tcp"' in page
    assert '<input type="hidden" name="template" value="jupyterlab">' in page
    assert client.get("/pods/new?template=tpl_nope").status_code == 404
    posted = {**FORM, "image": "gpucloud/jupyterlab", "ports": "8888/http 22/tcp", "template": "jupyterlab",
              "storage": "new", "volume_size": "5", "command": ""}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        created = client.post("/pods/create", posted)
    assert created.status_code == 302, created.content.decode()[:2000]
    pod = Pod.objects.get()
    assert pod.template == "jupyterlab" and len(pod.env["JUPYTER_TOKEN"]) > 20  # made for this pod
    page = client.get(created["Location"]).content.decode()
    assert f"/pods/{pod.pk}/ports/8888/lab?token=" in page  # "Open JupyterLab" with its token


def test_the_form_pages_answer_with_a_trailing_slash_too(alice: Persona) -> None:
    client = signed_in(alice)
    for slashed, page in (("/pods/new/?template=jupyterlab", "/pods/new?template=jupyterlab"),
                          ("/containers/new/", "/containers/new")):  # fmt: skip
        answer = client.get(slashed)
        assert (answer.status_code, answer["Location"]) == (302, page)
        assert client.get(page).status_code == 200
