"""The minute timer of the order flow: waiting orders take stock that became free, and orders go when policy allows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from exceptions.models import Case
from orchestration import services, tasks
from orchestration.models import Order, Task
from portal.models import DomainEvent
from tests.exceptions.portal_fixtures import seeded  # noqa: F401  (the exception types)
from tests.orchestration import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def paint(location_a):
    """An item with no stock yet at DCO."""
    return factories.ItemFactory(sku="PAINT")


def test_a_backorder_takes_arriving_stock_and_goes_to_the_warehouse(seeded, warehouse, customer, paint, location_a):  # noqa: F811
    order = factories.processed_order(customer, warehouse, [("PAINT", 6)])
    assert order.status == Order.Status.BACKORDERED
    factories.stock(paint, location_a, 10)  # a delivery was put away

    assert tasks.release_due() == {"filled": 1, "released": 1}

    order.refresh_from_db()
    assert order.status == Order.Status.RELEASED
    assert list(order.lines.values_list("allocated_quantity", "status")) == [(6, "allocated")]
    assert Task.objects.filter(order=order, kind=Task.Kind.PICK).count() == 1
    assert not Case.objects.filter(status__in=Case.ACTIVE_STATES, order_number=order.number).exists()
    history = order.history.order_by("history_id")
    assert [h.history_actor for h in history][-2:] == ["policy:backorder-fill", "policy:release"]


def test_waiting_orders_with_nothing_free_are_left_alone(warehouse, customer, paint, location_a):
    order = factories.processed_order(customer, warehouse, [("PAINT", 6)])
    quarantined = factories.stock(paint, location_a, 10)
    quarantined.quarantined = 10  # on hand, but held for inspection
    quarantined.save(update_fields=["quarantined"])
    inactive = factories.LocationFactory(warehouse=warehouse, code="Z-99", is_active=False)
    factories.stock(paint, inactive, 10)
    events_before = DomainEvent.objects.count()

    assert tasks.release_due() == {"filled": 0, "released": 0}

    order.refresh_from_db()
    assert order.status == Order.Status.BACKORDERED
    assert DomainEvent.objects.count() == events_before  # not re-allocated to the same outcome every minute


def test_the_longest_waiting_order_goes_first_when_stock_is_short(warehouse, customer, paint, location_a):
    first = factories.processed_order(customer, warehouse, [("PAINT", 4)])
    second = factories.processed_order(customer, warehouse, [("PAINT", 4)])
    factories.stock(paint, location_a, 5)

    tasks.release_due()

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.lines.get().allocated_quantity) == (Order.Status.RELEASED, 4)
    assert second.lines.get().allocated_quantity == 1  # what was left; it goes partly, as acme accepts splits
    assert second.status == Order.Status.RELEASED


def test_an_order_due_next_week_is_released_when_its_ship_window_opens(warehouse, customer, tape):
    ship_on = timezone.localdate() + dt.timedelta(days=7)
    order = factories.processed_order(customer, warehouse, [("TAPE", 2)], requested_ship_date=ship_on)
    assert order.status == Order.Status.ALLOCATED  # the policy releases two days ahead

    assert services.orders_release_due(actor=factories.PERSON) == 0
    five_days_on = timezone.now() + dt.timedelta(days=5, hours=1)
    assert services.orders_release_due(actor=factories.PERSON, now=five_days_on) == 1

    order.refresh_from_db()
    assert order.status == Order.Status.RELEASED


def test_orders_still_blocked_do_not_hold_back_one_that_may_go(warehouse, customer, tape):
    later = timezone.localdate() + dt.timedelta(days=9)
    blocked = [
        factories.processed_order(customer, warehouse, [("TAPE", 1)], requested_ship_date=later, priority=4)
        for _ in range(3)
    ]
    due = factories.processed_order(customer, warehouse, [("TAPE", 1)], requested_ship_date=later, priority=1)
    Order.objects.filter(pk=due.pk).update(requested_ship_date=timezone.localdate())

    assert services.orders_release_due(actor=factories.PERSON, limit=1) == 1

    assert Order.objects.get(pk=due.pk).status == Order.Status.RELEASED
    assert {o.status for o in Order.objects.filter(pk__in=[b.pk for b in blocked])} == {Order.Status.ALLOCATED}


def test_a_warehouse_that_releases_by_hand_keeps_its_orders(warehouse, customer, tape):
    from orchestration.models import ReleasePolicy

    ReleasePolicy.objects.create(name="Hand release", warehouse=warehouse, auto_release=False)
    order = factories.processed_order(customer, warehouse, [("TAPE", 1)])
    assert order.status == Order.Status.ALLOCATED

    assert services.orders_release_due(actor=factories.PERSON) == 0
    assert Order.objects.get(pk=order.pk).status == Order.Status.ALLOCATED
