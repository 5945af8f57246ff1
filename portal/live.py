"""Live change hints over the Channels layer (Redis). Delivery is at most once by design:
every hint carries the database sequence (DomainEvent id) so a client that sees a gap
or reconnects fetches what it missed over HTTP."""

from __future__ import annotations

import asyncio
import logging
import os
import threading

from portal.roles import working_roles

logger = logging.getLogger(__name__)


def role_group(role) -> str:
    return f"role.{role.value if hasattr(role, 'value') else role}"


def groups_for_user(user) -> set[str]:
    """The live groups a user may join: one per role whose work they may do."""
    roles = working_roles(user)
    return {role_group(role) for role in roles}


BROADCAST_TIMEOUT_S = 2.0

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid = 0


def _broadcast_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop for hints sent from synchronous code, running in a daemon thread.

    The channel layer keeps its Redis connections per event loop: sending each hint through
    ``async_to_sync`` ran it in a new loop, which connected to Redis for every hint. A forked
    process (a Celery worker child) starts its own loop on first use.
    """
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid() or not _loop.is_running():
            loop = asyncio.new_event_loop()
            running = threading.Event()
            loop.call_soon(running.set)
            threading.Thread(target=loop.run_forever, name="live-broadcast", daemon=True).start()
            running.wait(timeout=BROADCAST_TIMEOUT_S)
            _loop, _loop_pid = loop, os.getpid()
        return _loop


def group_send(group: str, message: dict) -> bool:
    """Send a channel-layer message to a group from synchronous code; False (and a log line) if it failed."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return False
    sent = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _broadcast_loop())
    try:
        sent.result(timeout=BROADCAST_TIMEOUT_S)
        return True
    except Exception:
        sent.cancel()
        logger.warning("live message not sent", extra={"group": group, "message_type": message.get("type")})
        return False


def broadcast(groups: set[str] | list[str], data: dict) -> None:
    """Send `data` to every socket in `groups`; never raises (live hints are best effort)."""
    message = {"type": "live.change", "data": data}
    for group in groups:
        group_send(group, message)
