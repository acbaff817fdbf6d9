"""Live updates over /ws/org/: a status change, once committed, reaches the open pages of the
deployment's organization (the badge rendered by the pages' own partial) and no one else's;
a socket without a signed-in session is refused; a deployment's logs stream to its org only."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.core.cache import cache
from django.db import connections
from django.utils import timezone

from accounts.models import Membership
from billing.services import credit_grant
from deployments import live
from deployments.lifecycle import deployment_transition
from deployments.models import Deployment, DeploymentStatus
from gpucloud.core import live as core_live
from pages.consumers import DeploymentLogsConsumer
from tests.support.live import Socket
from tests.support.pages import running, session_of
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db(transaction=True)  # pushes happen on commit


@pytest.fixture(autouse=True)
def _in_memory_layer(settings: Any) -> None:
    """These tests are about the consumers and the pushes; the in-memory layer carries them within
    this process. Crossing processes through Redis is tests/deployments/test_live_cross_process.py."""
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def stop(deployment_id: str) -> None:
    deployment = Deployment.objects.get(pk=deployment_id)
    deployment_transition(deployment, DeploymentStatus.STOPPING, "Deleted by the user.")


async def scenario(alice_session: str, charlie_session: str, deployment_id: str) -> dict[str, Any]:
    mine = Socket(alice_session, query=f"focus={deployment_id}".encode())  # the deployment's own page
    theirs, nobody = Socket(charlie_session), Socket(None)
    assert (await mine.connect())[0] and (await theirs.connect())[0]
    refused, code = await nobody.connect()
    assert not refused and code == 4401
    # On connecting, a page first gets the current truth (what changed since it was rendered).
    snapshot = [await mine.receive_json(), await mine.receive_json()]
    assert [(m["type"], m.get("status")) for m in snapshot] == [("deployment.changed", "active"),
                                                                ("balance.changed", None)]  # fmt: skip
    assert f'id="timeline-{deployment_id}"' in snapshot[0]["timeline_html"]  # its replicas and events
    assert (await theirs.receive_json())["type"] == "balance.changed"  # charlie runs nothing
    await sync_to_async(stop)(deployment_id)
    pushed = await mine.receive_json()
    assert await theirs.receive_nothing(timeout=0.5)
    await mine.close()
    await theirs.close()
    await nobody.close()
    await sync_to_async(connections.close_all)()
    return dict(pushed)


@pytest.mark.usefixtures("catalog")
def test_a_status_change_reaches_the_orgs_pages_only(settings: Any, alice: Persona, charlie: Persona) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    deployment = running(alice)
    pushed = asyncio.run(scenario(session_of(alice), session_of(charlie), deployment.pk))
    assert pushed["type"] == "deployment.changed" and pushed["deployment_id"] == deployment.pk
    assert pushed["status"] == "stopping"
    assert (pushed["cost_micros"], pushed["rate_micros"]) == (60_000, 3_600_000)  # corrects the page's ticker
    assert f'id="status-{deployment.pk}"' in pushed["html"] and ">Stopping<" in pushed["html"]
    assert "active → <strong>stopping</strong>: Deleted by the user." in pushed["timeline_html"]  # the new event
    assert "chat is active" in pushed["activity_html"]  # the dashboard's feed, from its own partial
    # The org's balance restarts from the server's figure too: nothing unbilled (the fixture's meter
    # is billed two minutes ahead), falling at the running replica's rate.
    assert pushed["balance"]["available_micros"] == 0 and pushed["balance"]["rate_micros"] == 3_600_000


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The deployment messages built and the groups sent to, as they happen."""
    seen: dict[str, list[str]] = {"built": [], "groups": []}
    build, group_send = live._pushed, InMemoryChannelLayer.group_send

    def built(deployment: Deployment) -> dict[str, Any]:
        seen["built"].append(deployment.pk)
        return build(deployment)

    async def sending(layer: InMemoryChannelLayer, group: str, message: dict[str, Any]) -> None:
        seen["groups"].append(group)
        await group_send(layer, group, message)

    monkeypatch.setattr(live, "_pushed", built)
    monkeypatch.setattr(InMemoryChannelLayer, "group_send", sending)
    return seen


async def opened_after_a_change(alice_session: str, charlie_session: str, deployment_id: str,
                                sent: dict[str, list[str]]) -> dict[str, Any]:  # fmt: skip
    theirs = Socket(charlie_session)  # another org's page is open: its mark is not alice's
    assert (await theirs.connect())[0] and (await theirs.receive_json())["type"] == "balance.changed"
    await sync_to_async(stop)(deployment_id)
    skipped = {key: list(value) for key, value in sent.items()}
    mine = Socket(alice_session)
    assert (await mine.connect())[0]
    snapshot = await mine.receive_json()
    assert (await mine.receive_json())["type"] == "balance.changed"
    await sync_to_async(finish)(deployment_id)
    pushed = await mine.receive_json()
    for socket in (mine, theirs):
        await socket.close()
    await sync_to_async(connections.close_all)()
    return {"skipped": skipped, "snapshot": snapshot, "pushed": pushed}


def finish(deployment_id: str) -> None:
    deployment = Deployment.objects.get(pk=deployment_id)
    deployment_transition(deployment, DeploymentStatus.STOPPED, "All instances terminated.")


@pytest.mark.usefixtures("catalog")
def test_a_change_while_no_page_of_the_org_is_open_is_neither_built_nor_sent_nor_lost(
    settings: Any, alice: Persona, charlie: Persona, sent: dict[str, list[str]]
) -> None:
    """Most changes happen with no page open (API clients, workers): nothing is rendered for them. A
    page opened after the change learns it from its snapshot, and gets the pushes from then on."""
    settings.ALLOWED_HOSTS = ["testserver"]
    deployment = running(alice)
    seen = asyncio.run(opened_after_a_change(session_of(alice), session_of(charlie), deployment.pk, sent))
    assert seen["skipped"] == {"built": [], "groups": []}
    assert (seen["snapshot"]["deployment_id"], seen["snapshot"]["status"]) == (deployment.pk, "stopping")
    assert (seen["pushed"]["deployment_id"], seen["pushed"]["status"]) == (deployment.pk, "stopped")
    assert sent == {"built": [deployment.pk], "groups": [f"org.{alice.org.pk}"]}


async def pushed_after_the_mark_expired(session: str, deployment_id: str, org_id: str) -> dict[str, Any]:
    socket = Socket(session)
    assert (await socket.connect())[0]
    assert [(await socket.receive_json())["type"] for _ in range(2)] == ["deployment.changed", "balance.changed"]
    await sync_to_async(cache.clear)()  # the page's mark expires (or the cache lost it)
    renewed = await sync_to_async(core_live.org_listened)(org_id)
    for _ in range(100):
        if renewed:
            break
        await asyncio.sleep(0.02)
        renewed = await sync_to_async(core_live.org_listened)(org_id)
    await sync_to_async(stop)(deployment_id)
    pushed = await socket.receive_json()
    await socket.close()
    await sync_to_async(connections.close_all)()
    return {"renewed": renewed, "pushed": pushed}


@pytest.mark.usefixtures("catalog")
def test_an_open_page_renews_its_orgs_mark(settings: Any, alice: Persona, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    monkeypatch.setattr(core_live, "LISTEN_RENEW_SECONDS", 0.05)
    deployment = running(alice)
    seen = asyncio.run(pushed_after_the_mark_expired(session_of(alice), deployment.pk, alice.org.pk))
    assert seen["renewed"] is True
    assert (seen["pushed"]["deployment_id"], seen["pushed"]["status"]) == (deployment.pk, "stopping")


async def snapshot_statuses(session: str) -> dict[str, str]:
    socket = Socket(session)
    assert (await socket.connect())[0]
    statuses = {}
    while (message := await socket.receive_json())["type"] == "deployment.changed":
        statuses[message["deployment_id"]] = message["status"]
    await socket.close()
    await sync_to_async(connections.close_all)()
    return statuses


@pytest.mark.usefixtures("catalog")
def test_a_page_whose_deployment_stopped_before_its_socket_joined_learns_it(settings: Any, alice: Persona) -> None:
    """The page rendered "Stopping"; the stop finished before the page's socket joined the group, so
    the push reached nobody: the snapshot on connecting carries it. Long-ended ones stay out."""
    settings.ALLOWED_HOSTS = ["testserver"]
    just_stopped, long_stopped, live = running(alice, "a"), running(alice, "b"), running(alice, "c")
    for deployment in (just_stopped, long_stopped):
        deployment_transition(deployment, DeploymentStatus.STOPPED, "All instances terminated.")
    Deployment.objects.filter(pk=long_stopped.pk).update(stopped_at=timezone.now() - timedelta(minutes=16))
    statuses = asyncio.run(snapshot_statuses(session_of(alice)))
    assert statuses == {just_stopped.pk: "stopped", live.pk: "active"}


async def top_up_reaches(session: str, org: Any) -> dict[str, Any]:
    socket = Socket(session)
    assert (await socket.connect())[0]
    assert (await socket.receive_json())["balance"]["available_micros"] == 0  # the snapshot on connecting
    await sync_to_async(credit_grant)(org=org, amount_micros=5_000_000, reason="promo")
    pushed = await socket.receive_json()
    await socket.close()
    await sync_to_async(connections.close_all)()
    return pushed


def test_money_coming_in_restarts_the_pages_balance(settings: Any, alice: Persona) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    pushed = asyncio.run(top_up_reaches(session_of(alice), alice.org))
    assert set(pushed) == {"type", "balance", "activity_html"} and pushed["type"] == "balance.changed"
    assert 'id="activity"' in pushed["activity_html"] and "Credit from the operator" in pushed["activity_html"]
    assert (pushed["balance"]["available_micros"], pushed["balance"]["rate_micros"]) == (5_000_000, 0)


async def follow_logs(alice: str, charlie: str, deployment_id: str, log: Path) -> dict[str, Any]:
    path = f"/ws/deployments/{deployment_id}/logs/"
    socket = Socket(alice, path)
    assert (await socket.connect())[0]
    received = [await socket.receive_json()]  # the tail so far
    with log.open("a") as handle:
        handle.write("request served\n")
    received.append(await socket.receive_json())  # only what was added
    await sync_to_async(Membership.objects.filter(org__deployments=deployment_id).delete)()  # she leaves the org
    closed = await socket.receive_output(5)
    received.append({"closed": closed["type"] == "websocket.close", "code": closed.get("code")})
    await socket.close()
    refusals = []
    for session in (charlie, None):
        other = Socket(session, path)
        refusals.append(await other.connect())
        await other.close()
    await sync_to_async(connections.close_all)()
    return {"received": received, "refusals": refusals}


@pytest.mark.usefixtures("catalog")
def test_logs_stream_their_tail_then_each_new_line_to_the_org_only(
    settings: Any, alice: Persona, charlie: Persona, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.VAR_DIR = tmp_path
    monkeypatch.setattr(DeploymentLogsConsumer, "poll_seconds", 0.05)
    deployment = running(alice)
    log = tmp_path / "instances" / "p" / "engine.log"
    log.parent.mkdir(parents=True)
    log.write_text("loading model\nserver listening\n")
    instance_id = deployment.instances.get().pk
    seen = asyncio.run(follow_logs(session_of(alice), session_of(charlie), deployment.pk, log))
    first, second, after_leaving = seen["received"]
    assert after_leaving == {"closed": True, "code": 4401}  # the stream ends when membership does
    assert first == {"type": "logs", "instance_id": instance_id, "lines": ["loading model", "server listening"]}
    assert second == {"type": "logs", "instance_id": instance_id, "lines": ["request served"]}
    assert seen["refusals"] == [(False, 4404), (False, 4401)]  # another org's page, no session
