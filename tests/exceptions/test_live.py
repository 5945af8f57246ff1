"""Live queue hints over the portal socket: only to the roles of the queue, numbered without gaps,
recoverable over HTTP after a gap, and the socket closes on sign-out or when the role is taken away."""

from __future__ import annotations

import functools
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings as django_settings
from django.contrib.auth.models import Group

from exceptions.models import Queue
from portal.asgi import application
from portal.roles import Role
from tests.exceptions.portal_fixtures import *  # noqa: F403  (fixtures)
from tests.exceptions.portal_fixtures import raise_case
from tests.websocket import WebsocketCommunicator

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")
TIMEOUT = 5


def run_async(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return async_to_sync(test)(*args, **kwargs)

    return wrapper


@pytest.fixture(autouse=True)
def private_channel_layer(settings):
    """A channel-layer prefix of this test's own: parallel workers share Redis."""
    layers = {name: {**config, "CONFIG": dict(config["CONFIG"])} for name, config in settings.CHANNEL_LAYERS.items()}
    layers["default"]["CONFIG"]["prefix"] = f"portal:channels:test:{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = layers


@pytest.fixture
def socket_for(client):
    """Sign `user` in and open a live socket with their session cookie; returns the connected communicator."""

    async def connect(user, expected_groups):
        await sync_to_async(client.force_login)(user)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        header = (b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode())
        communicator = WebsocketCommunicator(application, "/ws/live/", headers=[header, ORIGIN])
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        assert connected
        assert await communicator.receive_json_from(timeout=TIMEOUT) == {"type": "hello", "groups": expected_groups}
        return communicator

    return connect


async def _raise(**fields):
    return await sync_to_async(raise_case)(**fields)


async def _last_seq(code: str) -> int:
    return (await Queue.objects.aget(code=code)).last_seq


@run_async
async def test_a_raised_case_reaches_the_queues_role_with_its_sequence(supervisor, socket_for):
    socket = await socket_for(supervisor, ["role.warehouse_supervisor"])
    before = await _last_seq("warehouse_supervisor")

    case = await _raise()

    hint = await socket.receive_json_from(timeout=TIMEOUT)
    assert hint == {
        "type": "queue_change",
        "queue": "warehouse_supervisor",
        "seq": before + 1,
        "case_id": case.pk,
        "kind": "added",
        "status": "open",
    }
    await socket.disconnect()


@run_async
async def test_another_role_gets_no_subscription_and_no_hints(finance_user, socket_for):
    socket = await socket_for(finance_user, ["role.finance"])  # the supervisor group is not joined

    await _raise()

    assert await socket.receive_nothing(timeout=0.5) is True
    await socket.disconnect()


@run_async
async def test_consecutive_changes_carry_gapless_sequences_and_a_gap_is_recoverable(supervisor, socket_for, client):
    socket = await socket_for(supervisor, ["role.warehouse_supervisor"])
    start = await _last_seq("warehouse_supervisor")

    cases = [await _raise() for _ in range(3)]
    hints = [await socket.receive_json_from(timeout=TIMEOUT) for _ in cases]

    assert [hint["seq"] for hint in hints] == [start + 1, start + 2, start + 3]
    # A page that applied only the first hint fetches what it missed, in order.
    response = await sync_to_async(client.get)(f"/queues/warehouse_supervisor/changes?since={start + 1}")
    missed = response.json()["changes"]
    assert [(c["seq"], c["case_id"]) for c in missed] == [(start + 2, cases[1].pk), (start + 3, cases[2].pk)]
    await socket.disconnect()


@run_async
async def test_a_claim_is_an_update_hint(supervisor, socket_for):
    from exceptions.services import case_claim
    from portal.actors import Actor

    case = await _raise()
    socket = await socket_for(supervisor, ["role.warehouse_supervisor"])

    await sync_to_async(case_claim)(case=case, actor=Actor.for_user(supervisor))

    hint = await socket.receive_json_from(timeout=TIMEOUT)
    assert (hint["case_id"], hint["kind"], hint["status"]) == (case.pk, "updated", "assigned")
    await socket.disconnect()


@run_async
async def test_routing_removes_from_one_role_and_adds_to_another(supervisor, user_with_role, socket_for, client):
    from exceptions.services import case_route_to
    from portal.actors import Actor

    service = await sync_to_async(user_with_role)(Role.CUSTOMER_SERVICE, username="casey-service")
    case = await _raise()
    supervisor_socket = await socket_for(supervisor, ["role.warehouse_supervisor"])
    service_socket = await socket_for(service, ["role.customer_service"])

    await sync_to_async(case_route_to)(
        case=case, queue_code="customer_service", actor=Actor.for_user(supervisor), reason="customer decides"
    )

    removed = await supervisor_socket.receive_json_from(timeout=TIMEOUT)
    added = await service_socket.receive_json_from(timeout=TIMEOUT)
    assert (removed["queue"], removed["kind"]) == ("warehouse_supervisor", "removed")
    assert (added["queue"], added["kind"], added["case_id"]) == ("customer_service", "added", case.pk)
    await supervisor_socket.disconnect()
    await service_socket.disconnect()


@run_async
async def test_signing_out_closes_the_socket_and_stops_hints(supervisor, socket_for, client):
    socket = await socket_for(supervisor, ["role.warehouse_supervisor"])

    response = await sync_to_async(client.post)("/logout/")

    assert response.status_code == 302
    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "revoked", "reason": "signed out"}
    assert await socket.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 4403}
    # and the queue pages refuse the signed-out browser
    page = await sync_to_async(client.get)("/queues/warehouse_supervisor/changes?since=0")
    assert page.status_code == 302


@run_async
async def test_losing_the_role_closes_the_socket_and_refuses_the_queue(supervisor, socket_for, client):
    socket = await socket_for(supervisor, ["role.warehouse_supervisor"])

    group = await Group.objects.aget(name=Role.WAREHOUSE_SUPERVISOR.label)
    await sync_to_async(supervisor.groups.remove)(group)

    assert await socket.receive_json_from(timeout=TIMEOUT) == {"type": "revoked", "reason": "role removed"}
    assert await socket.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 4403}
    page = await sync_to_async(client.get)("/queues/warehouse_supervisor/")
    assert page.status_code == 403
