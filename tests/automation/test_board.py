"""The equipment board: who may see it, constant queries, and the live hint it listens for."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from automation import services
from portal.actors import Actor
from portal.models import DomainEvent
from portal.roles import Role
from tests.automation import factories
from tests.live_listener import GroupListener

pytestmark = pytest.mark.django_db

BOARD = "/automation/equipment/"
FRAGMENT = "/automation/equipment/fragment/"


@pytest.mark.parametrize(
    "role, status",
    [
        (Role.WAREHOUSE_SUPERVISOR, 200),
        (Role.OPERATIONS_ADMIN, 200),
        (Role.CUSTOMER_SERVICE, 403),
        (Role.FINANCE, 403),
        (Role.IT_SUPPORT, 403),
        (None, 403),
    ],
)
def test_board_is_for_supervisors_and_operations_admin(client, user_with_role, warehouse, role, status):
    user = user_with_role(*([role] if role else []), username=f"u-{role or 'none'}")
    client.force_login(user)
    assert client.get(BOARD).status_code == status
    assert client.get(FRAGMENT).status_code == status
    assert client.post("/automation/equipment/x/status/", {"status": "online", "reason": "r"}).status_code in (
        status if status == 403 else 404,
    )


def test_a_superuser_without_a_role_may_use_the_board_as_on_every_other_page(client, user_with_role, warehouse):
    client.force_login(user_with_role(username="root", is_superuser=True, is_staff=True))
    assert client.get(BOARD).status_code == 200
    assert client.get(FRAGMENT).status_code == 200


def test_anonymous_is_sent_to_login(client):
    response = client.get(BOARD)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_board_shows_units_per_zone_with_work_and_faults(client, user_with_role, warehouse, customer, amr_item):
    now = timezone.now()
    factories.unit(warehouse, "amr-1", now=now)
    factories.unit(warehouse, "ptl-a", zone="A", kind="pick_to_light", now=now)
    task = factories.pick_tasks(factories.released_order(customer, warehouse, [(amr_item.sku, 2)]))[0]
    services.task_handoff(task=task, now=now)
    services.equipment_fault(
        equipment="ptl-a", kind="jam", code="J7", now=now - dt.timedelta(minutes=5), actor=Actor.partner("wcs")
    )
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    response = client.get(BOARD)
    board = response.context["board"]
    assert [(z.zone, [c.equipment.code for c in z.units]) for z in board.zones] == [
        ("A", ["ptl-a"]),
        ("AMR", ["amr-1"]),
    ]
    zone_a, zone_amr = board.zones
    assert zone_a.worst == "bad" and zone_amr.worst == "ok"
    assert zone_amr.units[0].in_flight == {"dispatched": 1}
    assert zone_a.units[0].faults[0]["age"] == "5 min"
    assert (board.counts["faulted"], board.counts["online"], board.in_flight_total, board.open_faults) == (1, 1, 1, 1)
    html = response.content.decode()
    assert "status-faulted" in html and "J7" in html and 'src="/static/automation/board.js"' in html
    # Each unit's reason box says, to a screen reader too, what it is the reason for.
    assert 'aria-label="Why ptl-a is back online"' in html and 'aria-label="Why amr-1 goes to maintenance"' in html


def test_the_board_shows_one_warehouse_picked_from_the_list(client, user_with_role, warehouse):
    other = factories.WarehouseFactory(code="DCU", name="Second site")
    factories.WarehouseFactory(code="OLD", is_active=False)
    now = timezone.now()
    factories.unit(warehouse, "amr-1", now=now)
    factories.unit(other, "amr-9", now=now)
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))

    response = client.get(BOARD, {"warehouse": "DCU"})

    assert [code for code, _ in response.context["warehouses"]] == ["DCT", "DCU"]  # active sites only
    assert [c.equipment.code for z in response.context["board"].zones for c in z.units] == ["amr-9"]
    assert '<option value="DCU" selected>DCU · Second site</option>' in response.content.decode()


def _board_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(FRAGMENT).status_code == 200
    return len(queries)


def test_board_runs_a_constant_number_of_queries(client, user_with_role, warehouse, customer, amr_item):
    now = timezone.now()
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    factories.unit(warehouse, "amr-1", now=now)
    services.equipment_fault(equipment="amr-1", kind="jam", now=now, actor=Actor.partner("wcs"))
    few = _board_queries(client)
    for index in range(2, 12):
        factories.unit(warehouse, f"amr-{index}", now=now)
        factories.unit(warehouse, f"ptl-{index}", zone=f"Z{index}", kind="pick_to_light", now=now)
    for _ in range(5):
        task = factories.pick_tasks(factories.released_order(customer, warehouse, [(amr_item.sku, 1)]))[0]
        services.task_handoff(task=task, now=now)
    for index in range(2, 6):
        services.equipment_fault(equipment=f"ptl-{index}", kind="fault", now=now, actor=Actor.partner("wcs"))
    assert _board_queries(client) == few
    assert few <= 12


def test_equipment_change_sends_a_hint_with_the_event_sequence_to_supervisors(
    warehouse, django_capture_on_commit_callbacks
):
    with GroupListener("role.warehouse_supervisor") as live:
        factories.unit(warehouse, "amr-1")
        with django_capture_on_commit_callbacks(execute=True):
            services.equipment_set_status(
                equipment="amr-1",
                status="maintenance",
                now=timezone.now(),
                actor=Actor.system("test"),
                reason="Battery swap",
            )
        event = DomainEvent.objects.get(name="equipment.status_changed", payload__status="maintenance")
        message = live.next()
        while message["data"]["seq"] != event.pk:
            message = live.next()
        assert message["type"] == "live.change"
        assert {k: message["data"][k] for k in ("type", "seq", "equipment", "zone", "warehouse_id")} == {
            "type": "equipment",
            "seq": event.pk,
            "equipment": "amr-1",
            "zone": "AMR",
            "warehouse_id": warehouse.pk,
        }
