"""The live socket: signed-in users only, same-origin only, role groups only, closed on revocation, never on a bad frame."""

from __future__ import annotations

import functools
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import Group

from portal.asgi import application
from portal.live import broadcast
from portal.roles import Role
from portal.signals import notify_user_sockets
from tests.websocket import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")
TIMEOUT = 5


def run_async(test):
    """Run an async test body on an event loop (pytest-asyncio is not a dependency)."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return async_to_sync(test)(*args, **kwargs)

    return wrapper


@pytest.fixture(autouse=True)
def private_channel_layer(settings):
    """A channel-layer prefix of this test's own: parallel workers share Redis and user ids."""
    layers = {name: {**config, "CONFIG": dict(config["CONFIG"])} for name, config in settings.CHANNEL_LAYERS.items()}
    layers["default"]["CONFIG"]["prefix"] = f"portal:channels:test:{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers  # channels drops its cached layers on this setting change


@pytest.fixture
def session_cookie(client):
    def sign_in(user) -> tuple[bytes, bytes]:
        client.force_login(user)
        value = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        return (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={value}".encode())

    return sign_in


def live_socket(*headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/live/", headers=list(headers))


async def expect_revoked(communicator: WebsocketCommunicator, reason: str) -> None:
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "revoked", "reason": reason}
    assert await communicator.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 4403}


@run_async
async def test_anonymous_socket_is_refused():
    communicator = live_socket(ORIGIN)

    assert await communicator.connect(timeout=TIMEOUT) == (False, 4401)
    await communicator.wait()


@run_async
async def test_a_foreign_origin_is_refused(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    cookie = await sync_to_async(session_cookie)(user)
    communicator = live_socket(cookie, (b"origin", b"http://evil.example"))

    assert await communicator.connect(timeout=TIMEOUT) == (False, 1000)
    await communicator.wait()


@run_async
async def test_a_missing_origin_is_refused(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user))

    assert await communicator.connect(timeout=TIMEOUT) == (False, 1000)
    await communicator.wait()


@run_async
async def test_a_signed_in_user_gets_only_their_role_groups(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)

    connected, _ = await communicator.connect(timeout=TIMEOUT)

    assert connected is True
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "groups": ["role.finance"]}
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    await communicator.disconnect()


@run_async
async def test_frames_that_are_not_a_known_message_are_ignored(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)
    await communicator.connect(timeout=TIMEOUT)
    await communicator.receive_json_from(timeout=TIMEOUT)  # hello

    for frame in [{"text_data": "not json"}, {"text_data": "[1, 2]"}, {"text_data": '"ping"'},
                  {"text_data": "{}"}, {"bytes_data": b"\x00\xff"}, {"text_data": "\x00"}]:  # fmt: skip
        await communicator.send_to(**frame)

    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}  # still open, nothing else said
    await communicator.disconnect()


@run_async
async def test_hints_reach_only_sockets_of_that_role(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE, Role.PROCUREMENT)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)
    assert (await communicator.connect(timeout=TIMEOUT))[0] is True
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {
        "type": "hello",
        "groups": ["role.finance", "role.procurement"],
    }

    await sync_to_async(broadcast)({"role.it_support"}, {"stream": "queue.it_support", "seq": 1})
    await sync_to_async(broadcast)({"role.procurement"}, {"stream": "queue.procurement", "seq": 2})

    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"stream": "queue.procurement", "seq": 2}
    assert await communicator.receive_nothing(timeout=0.3) is True
    await communicator.disconnect()


@run_async
async def test_hints_are_sent_without_a_hop_to_the_database_thread(user_with_role, session_cookie, monkeypatch):
    """Channels runs its database clean-up in the sync thread before every handler; for hints, with
    every socket of a role receiving every hint, that hop was most of the server's live work."""
    import channels.consumer

    cleanups = []

    async def counted_cleanup():
        cleanups.append(1)

    user = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)
    assert (await communicator.connect(timeout=TIMEOUT))[0] is True
    await communicator.receive_json_from(timeout=TIMEOUT)  # hello
    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted_cleanup)

    for seq in (1, 2, 3):
        await sync_to_async(broadcast)({"role.finance"}, {"stream": "queue.finance", "seq": seq})
    received = [await communicator.receive_json_from(timeout=TIMEOUT) for _ in range(3)]
    await communicator.send_json_to({"type": "ping"})

    assert [hint["seq"] for hint in received] == [1, 2, 3]
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    assert cleanups == [1]  # the client's ping, which may reach the database; no hint did
    await communicator.disconnect()


@run_async
async def test_a_user_without_a_role_joins_no_role_group(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)()
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)

    assert (await communicator.connect(timeout=TIMEOUT))[0] is True
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "groups": []}
    await communicator.disconnect()


@run_async
async def test_revoked_session_closes_the_socket(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)
    assert (await communicator.connect(timeout=TIMEOUT))[0] is True
    await communicator.receive_json_from(timeout=TIMEOUT)

    await sync_to_async(notify_user_sockets)(user.pk, "session.revoked")

    await expect_revoked(communicator, "signed out")


@run_async
async def test_signing_out_closes_the_socket(client, user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)
    assert (await communicator.connect(timeout=TIMEOUT))[0] is True
    await communicator.receive_json_from(timeout=TIMEOUT)

    response = await sync_to_async(client.post)("/logout/")

    assert response.status_code == 302
    await expect_revoked(communicator, "signed out")


@run_async
async def test_another_users_revocation_leaves_the_socket_open(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    other = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)
    assert (await communicator.connect(timeout=TIMEOUT))[0] is True
    await communicator.receive_json_from(timeout=TIMEOUT)

    await sync_to_async(notify_user_sockets)(other.pk, "session.revoked")

    assert await communicator.receive_nothing(timeout=0.3) is True
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "pong"}
    await communicator.disconnect()


@run_async
async def test_removing_the_role_closes_the_socket(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)
    assert (await communicator.connect(timeout=TIMEOUT))[0] is True
    await communicator.receive_json_from(timeout=TIMEOUT)

    # the m2m signal notifies the user's sockets on commit (autocommit here)
    group = await Group.objects.aget(name=Role.FINANCE.label)
    await sync_to_async(user.groups.remove)(group)

    await expect_revoked(communicator, "role removed")


@run_async
async def test_roles_changed_without_a_lost_role_keeps_the_socket_open(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)
    assert (await communicator.connect(timeout=TIMEOUT))[0] is True
    await communicator.receive_json_from(timeout=TIMEOUT)

    await sync_to_async(notify_user_sockets)(user.pk, "roles.changed")

    assert await communicator.receive_nothing(timeout=0.5) is True
    await sync_to_async(broadcast)({"role.finance"}, {"stream": "queue.finance", "seq": 7})
    assert await communicator.receive_json_from(timeout=TIMEOUT) == {"stream": "queue.finance", "seq": 7}
    await communicator.disconnect()


@run_async
async def test_deactivating_the_user_closes_the_socket(user_with_role, session_cookie):
    user = await sync_to_async(user_with_role)(Role.FINANCE)
    communicator = live_socket(await sync_to_async(session_cookie)(user), ORIGIN)
    assert (await communicator.connect(timeout=TIMEOUT))[0] is True
    await communicator.receive_json_from(timeout=TIMEOUT)

    user.is_active = False
    await user.asave(update_fields=["is_active"])
    await sync_to_async(notify_user_sockets)(user.pk, "roles.changed")

    await expect_revoked(communicator, "role removed")


def test_hints_sent_from_synchronous_code_reuse_one_loop_and_its_redis_connection(monkeypatch):
    """Each hint used to run in a fresh event loop, and the channel layer connected to Redis anew for each."""
    import os

    import redis

    from portal import live

    server = redis.Redis.from_url(django_settings.REDIS_URL)
    broadcast({"role.test-nobody"}, {"type": "warm-up"})
    loop = live._broadcast_loop()
    connections_before = server.info("stats")["total_connections_received"]

    for number in range(50):
        broadcast({"role.test-nobody"}, {"type": "test", "seq": number})

    assert live._broadcast_loop() is loop and loop.is_running()
    assert server.info("stats")["total_connections_received"] - connections_before < 25  # one per hint before
    # a forked process (a Celery worker child) does not use its parent's loop: it starts its own
    monkeypatch.setattr(os, "getpid", lambda: -1)
    child_loop = live._broadcast_loop()
    assert child_loop is not loop and child_loop.is_running()
    child_loop.call_soon_threadsafe(child_loop.stop)
