"""Websockets of the pages: /ws/org/ streams the current organization's live updates to a
signed-in browser. Thin: authenticate by session, join the org's group, forward messages."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from deployments.live import org_group

UNAUTHENTICATED = 4401


def _current_org_id(user: Any, session: Any) -> str | None:
    """The org the session works in (as the pages decide it): the chosen one while the user is
    still a member, else their default."""
    from accounts import selectors
    from accounts.auth import SESSION_ORG_KEY

    chosen = session.get(SESSION_ORG_KEY)
    membership = selectors.membership_for(user, chosen) if chosen else None
    membership = membership or selectors.default_membership(user)
    return membership.org_id if membership else None


class OrgEventsConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=UNAUTHENTICATED)
            return
        org_id = await database_sync_to_async(_current_org_id)(user, self.scope["session"])
        if org_id is None:
            await self.close(code=UNAUTHENTICATED)
            return
        self.group = org_group(org_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def deployment_changed(self, event: dict[str, Any]) -> None:
        fields = ("type", "deployment_id", "status", "html", "cost_micros", "rate_micros", "as_of_ms")
        await self.send_json({k: event[k] for k in fields})
