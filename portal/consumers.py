"""The live socket: one per browser tab, subscribed only to the groups its user's roles own."""

from __future__ import annotations

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.live import groups_for_user

MAX_FRAME = 1000  # characters: a ping is a dozen


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Pushes small change hints ({stream, seq, ...}); clients fetch details over HTTP."""

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.close(code=4401)
            return
        self.user_id = user.pk
        self.groups_joined = await database_sync_to_async(groups_for_user)(user)
        for group in [*self.groups_joined, f"user.{user.pk}"]:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "groups": sorted(self.groups_joined)})

    async def disconnect(self, code):
        for group in [*getattr(self, "groups_joined", []), f"user.{getattr(self, 'user_id', 0)}"]:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def dispatch(self, message):
        """Hints skip Channels' per-message database clean-up: they never touch the database, and
        that clean-up is a hop to the sync thread for every socket on every hint."""
        if message["type"] == "live.change":
            await self.live_change(message)
        else:
            await super().dispatch(message)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """A browser only ever sends a small JSON ping; any other frame is ignored rather than closing the socket."""
        if text_data is None or len(text_data) > MAX_FRAME:
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            return
        if isinstance(content, dict):
            await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def live_change(self, event):
        """A change in a stream this socket follows (from portal.live.broadcast)."""
        await self.send_json(event["data"])

    async def session_revoked(self, event):
        await self.send_json({"type": "revoked", "reason": "signed out"})
        await self.close(code=4403)

    async def roles_changed(self, event):
        from django.contrib.auth import get_user_model

        user = await database_sync_to_async(get_user_model().objects.filter(pk=self.user_id, is_active=True).first)()
        allowed = await database_sync_to_async(groups_for_user)(user) if user else set()
        lost = set(self.groups_joined) - set(allowed)
        for group in lost:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined = allowed
        if lost or user is None:
            await self.send_json({"type": "revoked", "reason": "role removed"})
            await self.close(code=4403)
