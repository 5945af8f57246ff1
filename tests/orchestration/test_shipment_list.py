"""The shipments page: who may see it, what waits for which pickup, filters, and a constant number of queries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from inventory.models import CarrierCutoff
from orchestration import selectors, services
from orchestration.models import Shipment, Task
from portal.roles import Role
from tests.orchestration import factories

LIST = reverse("orchestration:shipment-list")


def packed(customer, warehouse, sku: str = "TAPE", quantity: int = 2, **fields) -> Shipment:
    """An order picked and packed: its shipment waits on the dock."""
    order = factories.processed_order(customer, warehouse, [(sku, quantity)], **fields)
    for task in Task.objects.filter(order=order, kind=Task.Kind.PICK):
        services.task_dispatch(task=task, actor=factories.ACTOR)
        services.task_complete(task=task, actor=factories.ACTOR)
    pack = Task.objects.get(order=order, kind=Task.Kind.PACK)
    services.task_dispatch(task=pack, actor=factories.ACTOR)
    services.task_complete(task=pack, actor=factories.ACTOR)
    return order.shipments.get()


@pytest.mark.parametrize(
    "role, status",
    [
        (Role.TRANSPORTATION, 200),
        (Role.WAREHOUSE_SUPERVISOR, 200),
        (Role.CUSTOMER_SERVICE, 200),
        (Role.OPERATIONS_ADMIN, 200),
        (Role.FINANCE, 403),
        (Role.PROCUREMENT, 403),
        (None, 403),
    ],
)
def test_shipments_are_for_transportation_the_floor_and_customer_service(client, user_with_role, db, role, status):
    client.force_login(user_with_role(*([role] if role else []), username=f"u-{role or 'none'}"))
    assert client.get(LIST).status_code == status
    assert ("Shipments" in client.get("/").content.decode()) == (status == 200)


def test_waiting_shipments_come_oldest_first_with_their_pickup_and_units(
    client, user_with_role, warehouse, customer, tape
):
    CarrierCutoff.objects.create(warehouse=warehouse, carrier="DPD", service_level="standard", cutoff_time="16:45")
    first = packed(customer, warehouse, quantity=3, carrier="DPD")
    second = packed(customer, warehouse, quantity=1)
    gone = packed(customer, warehouse, quantity=1, carrier="DPD")
    services.shipment_ship(shipment=gone, carrier="DPD", tracking_number="TRK-1", actor=factories.ACTOR)
    client.force_login(user_with_role(Role.TRANSPORTATION))

    response = client.get(LIST)

    rows = response.context["rows"]
    assert [(s.number, s.units, s.pickup) for s in rows] == [
        (first.number, 3, "16:45"),
        (second.number, 1, warehouse.default_cutoff_time.strftime("%H:%M")),
    ]
    assert _numbers(client, {"state": "shipped"}) == [gone.number]
    assert _numbers(client, {"state": "all", "q": "TRK-1"}) == [gone.number]
    assert _numbers(client, {"state": "all", "carrier": selectors.NO_CARRIER}) == [second.number]
    assert _numbers(client, {"state": "waiting", "warehouse": "NOPE"}) == []


def test_a_shipment_still_on_the_dock_after_its_pickup_is_flagged(warehouse, customer, tape):
    CarrierCutoff.objects.create(warehouse=warehouse, carrier="DPD", service_level="standard", cutoff_time="16:00")
    today = timezone.now().astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    due_today = packed(customer, warehouse, carrier="DPD", requested_ship_date=today.date())
    due_tomorrow = packed(customer, warehouse, carrier="DPD", requested_ship_date=today.date() + dt.timedelta(days=1))

    def seen_at(hour: int, minute: int) -> list[tuple]:
        rows = selectors.shipment_list(selectors.ShipmentFilters())
        return [
            (s.number, s.pickup, s.missed_pickup)
            for s in selectors.shipment_rows(rows, now=today.replace(hour=hour, minute=minute))
        ]

    tomorrow = f"{today + dt.timedelta(days=1):%a} 16:00"
    assert seen_at(15, 59) == [(due_today.number, "16:00", False), (due_tomorrow.number, tomorrow, False)]
    assert seen_at(16, 1) == [(due_today.number, "16:00", True), (due_tomorrow.number, tomorrow, False)]


def _numbers(client, params) -> list[str]:
    return [s.number for s in client.get(LIST, params).context["rows"]]


def _queries(client, params=None) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(LIST, params or {}).status_code == 200
    return len(captured)


def test_the_page_costs_the_same_queries_for_few_or_many_shipments(client, user_with_role, warehouse, customer, tape):
    client.force_login(user_with_role(Role.TRANSPORTATION))
    packed(customer, warehouse)
    _queries(client)  # warm the session and role caches
    few = _queries(client)
    for _ in range(6):
        packed(customer, warehouse, carrier="DPD")
    assert _queries(client, {"size": 100}) == few


def ship_url(shipment: Shipment) -> str:
    return reverse("orchestration:shipment-ship", args=[shipment.number])


def test_transportation_records_a_pickup_by_hand_through_the_service(client, user_with_role, warehouse, customer, tape):
    from portal.models import DomainEvent

    shipment = packed(customer, warehouse, carrier="DPD")
    client.force_login(user_with_role(Role.TRANSPORTATION, username="terry"))

    response = client.post(
        ship_url(shipment),
        {
            "carrier": "DPD",
            "tracking_number": " TRK-77 ",
            "reason": "TMS down, driver's manifest",
            "next": LIST + "?state=waiting",
        },
    )

    assert response.status_code == 302 and response["Location"] == LIST + "?state=waiting"
    shipment.refresh_from_db()
    assert (shipment.status, shipment.tracking_number) == (Shipment.Status.SHIPPED, "TRK-77")
    assert shipment.order.status == "shipped"
    recorded = shipment.history.latest("history_id")
    assert (recorded.history_actor, recorded.history_reason) == ("user:terry", "TMS down, driver's manifest")
    assert DomainEvent.objects.filter(name="shipment.shipped", subject_id=str(shipment.pk)).count() == 1
    assert "Pickup by hand" in client.get(LIST).content.decode()


@pytest.mark.parametrize(
    "form, problem",
    [
        ({"carrier": "DPD", "tracking_number": "T-1", "reason": " "}, "Say why"),
        ({"carrier": "DPD", "tracking_number": "", "reason": "scan lost"}, "tracking number"),
        ({"carrier": "DPD", "tracking_number": "T" * 81, "reason": "scan lost"}, "tracking number"),
        ({"carrier": "", "tracking_number": "T-1", "reason": "scan lost"}, "Name the carrier"),
    ],
)
def test_a_pickup_with_missing_or_bad_details_is_refused_and_changes_nothing(
    client, user_with_role, warehouse, customer, tape, form, problem
):
    shipment = packed(customer, warehouse)
    client.force_login(user_with_role(Role.TRANSPORTATION))

    response = client.post(ship_url(shipment), {**form, "next": "https://evil.example/"}, follow=True)

    assert response.redirect_chain[0][0] == LIST  # a foreign "next" is not followed
    assert problem in response.content.decode()
    shipment.refresh_from_db()
    assert (shipment.status, shipment.tracking_number) == (Shipment.Status.PACKED, "")
    assert shipment.history.count() == 1


def test_customer_service_may_look_but_not_record_a_pickup(client, user_with_role, warehouse, customer, tape):
    shipment = packed(customer, warehouse)
    client.force_login(user_with_role(Role.CUSTOMER_SERVICE))

    assert "Pickup by hand" not in client.get(LIST).content.decode()
    assert client.post(ship_url(shipment), {"carrier": "DPD", "tracking_number": "T", "reason": "r"}).status_code == 403
    assert client.post(reverse("orchestration:shipment-ship", args=["SH-NOPE"])).status_code == 403
    shipment.refresh_from_db()
    assert shipment.status == Shipment.Status.PACKED


def test_a_shipment_already_shipped_is_not_shipped_twice(client, user_with_role, warehouse, customer, tape):
    shipment = packed(customer, warehouse, carrier="DPD")
    services.shipment_ship(shipment=shipment, carrier="DPD", tracking_number="TRK-1", actor=factories.ACTOR)
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR))

    response = client.post(
        ship_url(shipment), {"carrier": "UPS", "tracking_number": "TRK-2", "reason": "again"}, follow=True
    )

    assert "not allowed while it is shipped" in response.content.decode()
    shipment.refresh_from_db()
    assert (shipment.carrier, shipment.tracking_number) == ("DPD", "TRK-1")
    assert client.post(reverse("orchestration:shipment-ship", args=["SH-NOPE"]), {"reason": "x"}).status_code == 404
