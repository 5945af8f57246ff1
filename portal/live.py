"""Live change hints over the Channels layer (Redis). Delivery is at most once by design:
every hint carries the database sequence (DomainEvent id) so a client that sees a gap
or reconnects fetches what it missed over HTTP."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync

from portal.roles import roles_of

logger = logging.getLogger(__name__)


def role_group(role) -> str:
    return f"role.{role.value if hasattr(role, 'value') else role}"


def groups_for_user(user) -> set[str]:
    """The live groups a user may join: one per role they hold."""
    roles = roles_of(user) if user is not None else frozenset()
    return {role_group(role) for role in roles}


def broadcast(groups: set[str] | list[str], data: dict) -> None:
    """Send `data` to every socket in `groups`; never raises (live hints are best effort)."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    for group in groups:
        try:
            async_to_sync(layer.group_send)(group, {"type": "live.change", "data": data})
        except Exception:
            logger.warning("live broadcast failed", extra={"group": group})
