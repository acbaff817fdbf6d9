"""Websockets of the pages: /ws/org/ streams the current organization's live updates to a
signed-in browser; /ws/deployments/<id>/logs/ follows one deployment's engine logs. Thin:
authenticate by session, check the org, forward."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import connections
from django.template.loader import render_to_string

from accounts import selectors
from accounts.auth import SESSION_ORG_KEY
from accounts.models import Membership, Organization
from deployments.live import org_snapshot
from deployments.logs import log_tails, new_lines
from deployments.models import Deployment
from gpucloud.core import live
from gpucloud.core.live import org_group, org_listen
from pages.overview import recent_activity

logger = logging.getLogger(__name__)
UNAUTHENTICATED = 4401
NOT_FOUND = 4404
LOG_TAIL = 200


def _off_thread(function: Callable[..., Any]) -> Callable[..., Any]:
    """Run `function` in a pool thread rather than asgiref's one shared sync thread (the gateway's
    lookups wait on that one), closing the thread's database connections afterwards."""

    def run(*args: Any) -> Any:
        try:
            return function(*args)
        finally:
            connections.close_all()

    return database_sync_to_async(run, thread_sensitive=False)


def _snapshot(org_id: str, focus: str | None) -> list[dict[str, Any]]:
    org = Organization.objects.get(pk=org_id)
    return [_with_activity(message, org) for message in org_snapshot(org, focus=focus)]


def _with_activity(message: dict[str, Any], org: Organization) -> dict[str, Any]:
    """Senders mark a message `with_activity` when the dashboard's feed has a new line; the feed is
    the pages' own view (rendered by the dashboard's partial), so it is added here."""
    if message.pop("with_activity", False):
        message["activity_html"] = render_to_string(
            "accounts/dashboard.html#activity", {"activity": recent_activity(org)}
        )
    return message


def _activity_of(org_id: str, message: dict[str, Any]) -> dict[str, Any]:
    return _with_activity(dict(message), Organization.objects.get(pk=org_id))


async def _listen(org_id: str) -> None:
    try:
        await sync_to_async(org_listen, thread_sensitive=False)(org_id)
    except Exception:  # the cache away a moment: senders that cannot read it send; the renewal retries
        logger.warning("live mark of org %s not set", org_id, exc_info=True)


def _current_org_id(user: Any, session: Any) -> str | None:
    """The org the session works in (as the pages decide it): the chosen one while the user is
    still a member, else their default."""
    chosen = session.get(SESSION_ORG_KEY)
    membership = selectors.membership_for(user, chosen) if chosen else None
    membership = membership or selectors.default_membership(user)
    return membership.org_id if membership else None


class OrgEventsConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None
    org_id: str | None = None
    renewal: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        org_id = await database_sync_to_async(_current_org_id)(user, self.scope["session"])
        if org_id is None:
            await self.close(code=UNAUTHENTICATED)
            return
        self.org_id = org_id
        self.group = org_group(org_id)
        # Marked first, then joined, then the snapshot: senders that find no mark build nothing,
        # and a change they skipped committed before the snapshot reads (gpucloud.core.live).
        await _listen(org_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.renewal = asyncio.create_task(self._keep_listening(org_id))
        # Joined first, then the snapshot: a change between the page's render and now is not lost.
        focus = parse_qs(self.scope.get("query_string", b"").decode()).get("focus", [None])[0]
        for message in await _off_thread(_snapshot)(org_id, focus):
            await self.send_json(message)

    async def disconnect(self, code: int) -> None:
        if self.renewal:
            self.renewal.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _keep_listening(self, org_id: str) -> None:
        """Renew the org's mark while the page is open (other pages of the org may keep it after)."""
        while True:
            await asyncio.sleep(live.LISTEN_RENEW_SECONDS)
            await _listen(org_id)

    async def _enriched(self, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("with_activity") and self.org_id is not None:
            return dict(await _off_thread(_activity_of)(self.org_id, event))
        return event

    async def deployment_changed(self, event: dict[str, Any]) -> None:
        event = await self._enriched(event)
        fields = ("type", "deployment_id", "status", "html", "cost_micros", "rate_micros", "as_of_ms", "sessions",
                  "balance", "timeline_html", "activity_html")  # fmt: skip
        await self.send_json({k: event[k] for k in fields if k in event})

    async def balance_changed(self, event: dict[str, Any]) -> None:
        event = await self._enriched(event)
        await self.send_json({k: event[k] for k in ("type", "balance", "activity_html") if k in event})


def _deployment_of_session(user: Any, session: Any, deployment_id: str) -> Any:
    """The deployment when it belongs to the session's current org, else None (the socket closes
    as a page of another tenant's deployment would 404)."""
    org_id = _current_org_id(user, session)
    return Deployment.objects.filter(org_id=org_id, pk=deployment_id).first() if org_id else None


class DeploymentLogsConsumer(AsyncJsonWebsocketConsumer):
    """/ws/deployments/<id>/logs/: the replicas' engine logs, first their tail, then each new line
    as the provider reports it (polled: providers expose tails, not streams, in general)."""

    poll_seconds = 1.0
    task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        deployment_id = self.scope["url_route"]["kwargs"]["deployment_id"]
        deployment = None
        if user is not None and user.is_authenticated:
            deployment = await database_sync_to_async(_deployment_of_session)(
                user, self.scope["session"], deployment_id
            )
        if deployment is None:
            await self.close(code=UNAUTHENTICATED if not user or not user.is_authenticated else NOT_FOUND)
            return
        await self.accept()
        self.task = asyncio.create_task(self._follow(deployment))

    async def disconnect(self, code: int) -> None:
        if self.task:
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=5)  # a provider read in flight finishes first

    async def _follow(self, deployment: Any) -> None:
        seen: dict[str, list[str]] = {}
        read = _off_thread(self._read)  # provider calls are slow
        while True:
            try:
                tails = await read(deployment)
            except Exception:  # a provider hiccup must not end the stream; the next poll retries
                logger.warning("log poll for %s failed", deployment.pk, exc_info=True)
                tails = {}
            if tails is None:  # no longer a member of the deployment's org
                await self.close(code=UNAUTHENTICATED)
                return
            for instance_id, lines in tails.items():
                fresh = new_lines(seen.get(instance_id, []), lines)
                seen[instance_id] = lines
                if fresh:
                    await self.send_json({"type": "logs", "instance_id": instance_id, "lines": fresh})
            await asyncio.sleep(self.poll_seconds)

    def _read(self, deployment: Any) -> dict[str, list[str]] | None:
        """The live replicas' tails, while the user still belongs to the deployment's org."""

        if not Membership.objects.filter(user=self.scope["user"], org_id=deployment.org_id).exists():
            return None
        return log_tails(deployment, tail=LOG_TAIL, live_only=True)


class UnknownPathConsumer(AsyncJsonWebsocketConsumer):
    """Any other websocket path: refused at the handshake (4404), where Channels' router would
    raise and the server answer 500."""

    async def connect(self) -> None:
        await self.close(code=NOT_FOUND)
