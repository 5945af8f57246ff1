"""Today's carrier cutoffs: where the orders due for each pickup stand, on the home page of the roles that watch them,
and the order list filters its rows link to."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from inventory.models import CarrierCutoff, Warehouse
from orchestration import selectors
from orchestration.models import Order
from portal.roles import Role
from tests.inventory import factories as stock_factories
from tests.orchestration import factories

pytestmark = pytest.mark.django_db

S = Order.Status
DAY = dt.date(2026, 12, 7)  # a Monday


def at(hour: int, minute: int = 0, *, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


def order_in(status: str, customer, warehouse, *, due: dt.date = DAY, carrier: str = "DPD", **fields) -> Order:
    """An order due on `due` put straight into `status` (the board only reads)."""
    order = factories.order_for(customer, warehouse, [("TAPE", 1)], requested_ship_date=due, carrier=carrier)
    Order.objects.filter(pk=order.pk).update(status=status, **fields)
    return order


@pytest.fixture
def dpd(warehouse):
    Warehouse.objects.filter(pk=warehouse.pk).update(time_zone="UTC", default_cutoff_time=dt.time(17, 0))
    CarrierCutoff.objects.create(warehouse=warehouse, carrier="DPD", service_level="standard", cutoff_time="16:00")
    warehouse.refresh_from_db()
    return warehouse


def only_row(rows):
    assert len(rows) == 1, rows
    return rows[0]


def test_each_order_due_today_counts_once_in_its_stage(dpd, customer, tape):
    for status in (S.CREDIT_HOLD, S.BACKORDERED, S.RELEASED, S.PICKING, S.PICKING, S.PACKED):
        order_in(status, customer, dpd)
    order_in(S.SHIPPED, customer, dpd, shipped_at=at(9))
    order_in(S.INVOICED, customer, dpd, shipped_at=at(10))
    order_in(S.SHIPPED, customer, dpd, shipped_at=at(23, day=DAY - dt.timedelta(days=1)))  # left early: not today's
    order_in(S.CANCELLED, customer, dpd)
    order_in(S.REJECTED, customer, dpd)
    order_in(S.RELEASED, customer, dpd, due=DAY + dt.timedelta(days=1))  # tomorrow's
    order_in(S.PICKING, customer, dpd, due=DAY - dt.timedelta(days=2))  # overdue, still not packed
    order_in(S.PACKED, customer, dpd, due=DAY - dt.timedelta(days=1))  # overdue but ready: not a worry

    row = only_row(selectors.cutoff_board(now=at(12)))

    assert (row.waiting, row.picking, row.packed, row.shipped, row.overdue) == (2, 3, 1, 2, 1)
    assert (row.due, row.not_ready) == (8, 5)
    assert (row.warehouse, row.carrier, row.service_level) == (dpd, "DPD", "standard")
    assert (row.cutoff_label, row.time_left_label, row.state) == ("16:00", "in 4 h 00 min", "ok")
    assert [(s["stage"], s["count"], s["percent"]) for s in row.segments] == [
        ("shipped", 2, 25.0),
        ("packed", 1, 12.5),
        ("picking", 3, 37.5),
        ("waiting", 2, 25.0),
    ]


def test_the_pickup_turns_at_risk_in_the_warning_window_and_missed_after_it(dpd, customer, tape):
    order = order_in(S.PICKING, customer, dpd)

    assert only_row(selectors.cutoff_board(now=at(15, 29), warning_minutes=30)).state == "ok"
    at_risk = only_row(selectors.cutoff_board(now=at(15, 40), warning_minutes=30))
    assert (at_risk.state, at_risk.time_left_label) == ("at_risk", "in 20 min")
    missed = only_row(selectors.cutoff_board(now=at(16, 10), warning_minutes=30))
    assert (missed.state, missed.time_left_label) == ("missed", "left 10 min ago")

    Order.objects.filter(pk=order.pk).update(status=S.PACKED)
    assert only_row(selectors.cutoff_board(now=at(16, 10), warning_minutes=30)).state == "ok"  # it made it


def test_each_carrier_service_is_its_own_row_soonest_pickup_first(dpd, customer, tape):
    order_in(S.RELEASED, customer, dpd, carrier="")  # no carrier booked: the warehouse's default cutoff, 17:00
    order_in(S.RELEASED, customer, dpd, carrier="DPD")
    Order.objects.filter(carrier="").update(service_level="express")

    rows = selectors.cutoff_board(now=at(8))

    assert [(r.carrier, r.service_level, r.cutoff_label, r.carrier_filter) for r in rows] == [
        ("DPD", "standard", "16:00", "DPD"),
        ("", "express", "17:00", selectors.NO_CARRIER),
    ]


def test_today_is_each_warehouses_own_day(customer, tape, dpd):
    east = stock_factories.WarehouseFactory(code="NYC", time_zone="America/New_York", default_cutoff_time=dt.time(18))
    stock_factories.stock(tape, stock_factories.LocationFactory(warehouse=east, code="A-01"), 10)
    now = at(3)  # 22:00 the evening before in New York
    order_in(S.RELEASED, customer, east, due=DAY - dt.timedelta(days=1))
    order_in(S.RELEASED, customer, east, due=DAY)  # tomorrow there
    order_in(S.RELEASED, customer, dpd, due=DAY)

    rows = {row.warehouse.code: row for row in selectors.cutoff_board(now=now)}

    assert (rows["NYC"].picking, rows["NYC"].cutoff_label, rows["NYC"].state) == (1, "18:00", "missed")
    assert rows["NYC"].cutoff.date() == DAY - dt.timedelta(days=1)
    assert (rows["DCO"].picking, rows["DCO"].state) == (1, "ok")


def test_the_board_costs_three_queries_however_many_orders_and_warehouses(
    dpd, customer, tape, django_assert_num_queries
):
    for code in ("W1", "W2", "W3"):
        other = stock_factories.WarehouseFactory(code=code, default_cutoff_time=dt.time(18))
        stock_factories.stock(tape, stock_factories.LocationFactory(warehouse=other, code="A-01"), 10)
        for status in (S.RELEASED, S.PACKED, S.ON_HOLD):
            order_in(status, customer, other, due=timezone.localdate())
    for _ in range(5):
        order_in(S.PICKING, customer, dpd, due=timezone.localdate())

    with django_assert_num_queries(3):
        rows = selectors.cutoff_board()
    assert sum(row.due for row in rows) == 14


def test_nothing_due_says_so(dpd):
    assert selectors.cutoff_board(now=at(12)) == []


# --- the page ---------------------------------------------------------------------------


@pytest.fixture
def todays_orders(dpd, customer, tape):
    today = timezone.localdate()
    order_in(S.PICKING, customer, dpd, due=today)
    order_in(S.PACKED, customer, dpd, due=today)
    order_in(S.RELEASED, customer, dpd, due=today - dt.timedelta(days=1))
    order_in(S.RELEASED, customer, dpd, due=today, carrier="UPS")
    return today


@pytest.mark.parametrize("role", [Role.WAREHOUSE_SUPERVISOR, Role.TRANSPORTATION, Role.CUSTOMER_SERVICE])
def test_the_roles_that_watch_pickups_see_the_board_on_their_home(client, user_with_role, todays_orders, role):
    client.force_login(user_with_role(role))
    page = client.get("/").content.decode()
    assert 'id="panel-cutoffs"' in page
    link = (
        f"{reverse('orchestration:order-list')}?warehouse=DCO&amp;carrier=DPD"
        f"&amp;ship_by={todays_orders:%Y-%m-%d}&amp;status={selectors.NOT_PACKED}"
    )
    assert link in page
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "1 of 2 ready · 1 in picking · 0 not released · 1 overdue from earlier days" in text


def test_roles_without_pickups_do_not_get_the_board(client, user_with_role, todays_orders):
    client.force_login(user_with_role(Role.FINANCE))
    assert 'id="panel-cutoffs"' not in client.get("/").content.decode()
    assert client.get(reverse("orchestration:cutoff-board")).status_code == 403


def test_the_board_alone_is_served_for_its_minute_refresh(client, user_with_role, todays_orders):
    client.force_login(user_with_role(Role.TRANSPORTATION))
    response = client.get(reverse("orchestration:cutoff-board"))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-cutoff="DCO/DPD/standard"' in body and 'data-cutoff="DCO/UPS/standard"' in body
    assert "<html" not in body


def test_a_board_row_leads_to_the_orders_still_to_pack(client, user_with_role, todays_orders):
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR))
    response = client.get(
        reverse("orchestration:order-list"),
        {"warehouse": "DCO", "carrier": "DPD", "ship_by": f"{todays_orders:%Y-%m-%d}", "status": selectors.NOT_PACKED},
    )
    numbers = [row["order"].number for row in response.context["rows"]]
    expected = Order.objects.filter(carrier="DPD", status__in=[S.PICKING, S.RELEASED]).values_list("number", flat=True)
    assert sorted(numbers) == sorted(expected) and len(numbers) == 2  # today's in picking and yesterday's released


def test_orders_with_no_carrier_booked_can_be_listed(client, user_with_role, dpd, customer, tape):
    unbooked = order_in(S.RELEASED, customer, dpd, carrier="")
    order_in(S.RELEASED, customer, dpd, carrier="DPD")
    client.force_login(user_with_role(Role.CUSTOMER_SERVICE))
    response = client.get(reverse("orchestration:order-list"), {"carrier": selectors.NO_CARRIER})
    assert [row["order"].number for row in response.context["rows"]] == [unbooked.number]


def test_order_pages_show_the_cutoff_on_the_warehouses_clock(client, user_with_role, customer, tape, settings):
    settings.TIME_ZONE = "UTC"
    rotterdam = stock_factories.WarehouseFactory(
        code="RTM", time_zone="Europe/Amsterdam", default_cutoff_time=dt.time(17, 0)
    )
    stock_factories.stock(tape, stock_factories.LocationFactory(warehouse=rotterdam, code="A-01"), 10)
    order = order_in(S.RELEASED, customer, rotterdam, carrier="")
    client.force_login(user_with_role(Role.CUSTOMER_SERVICE))

    listed = client.get(reverse("orchestration:order-list"), {"warehouse": "RTM"})
    detail = client.get(reverse("orchestration:order-detail", args=[order.number]))

    assert listed.context["rows"][0]["due"]["cutoff_label"] == "17:00"
    assert "cutoff 17:00 (Europe/Amsterdam)" in detail.content.decode()
