"""What order services hold locked, seen from another database session, and services racing in processes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction

from inventory.models import Reservation
from inventory.selectors import stock_discrepancies
from orchestration import services
from orchestration.models import Customer, Order, Shipment, Task
from tests.exceptions.processes import run_in_processes
from tests.orchestration import races
from tests.orchestration.factories import (
    ACTOR,
    CustomerFactory,
    ItemFactory,
    LocationFactory,
    order_for,
    processed_order,
    stock,
)
from tests.sessions import can_lock, other_session

pytestmark = pytest.mark.django_db(transaction=True)


def test_processing_an_order_locks_its_own_row_and_customer_but_never_the_shared_warehouse():
    # Given: a received order in a warehouse that every other order shares
    location = LocationFactory(code="A-01")
    item = ItemFactory(sku="LOCK-1")
    stock(item, location, 10)
    order = order_for(CustomerFactory(code="lock-a"), location.warehouse, [("LOCK-1", 2)])
    other = other_session()
    try:
        # When: the order is processed in a transaction that is still open
        with transaction.atomic():
            processed = services.order_process(order=order, actor=ACTOR)
            assert processed.status == Order.Status.RELEASED

            # Then: the order and its customer (whose credit was just decided) are held ...
            assert not can_lock(other, "orchestration_order", order.pk)
            assert not can_lock(other, "orchestration_customer", order.customer_id)
            # ... but the warehouse is not: other customers' orders there go ahead meanwhile
            assert can_lock(other, "inventory_warehouse", order.warehouse_id)
        # ... and everything is free once the transaction ends
        assert can_lock(other, "orchestration_order", order.pk)
    finally:
        other.close()


RACED_ORDERS = 8


def _released_orders(sku: str, *, lines: int = 1) -> list[Order]:
    """RACED_ORDERS released orders of `lines` lines of one unit each, their pick tasks dispatched."""
    location = LocationFactory(code=f"{sku}-01")
    items = [ItemFactory(sku=f"{sku}-{n}") for n in range(lines)]
    for item in items:
        stock(item, location, RACED_ORDERS)
    customer = CustomerFactory(code=f"{sku.lower()}-buyer")
    orders = [
        processed_order(customer, location.warehouse, [(item.sku, 1) for item in items]) for _ in range(RACED_ORDERS)
    ]
    assert {order.status for order in orders} == {Order.Status.RELEASED}
    for task in Task.objects.filter(order__in=orders):
        services.task_dispatch(task=task, actor=ACTOR)
    return orders


@pytest.mark.slow
def test_a_person_finishing_the_pack_task_while_the_wms_reports_the_pack_never_deadlocks_nor_packs_twice():
    # Given: picked orders whose pack tasks wait, dispatched, at the bench
    orders = _released_orders("PACKRACE")
    for task in Task.objects.filter(order__in=orders, kind=Task.Kind.PICK):
        services.task_complete(task=task, actor=ACTOR)
    packs = list(Task.objects.filter(order__in=orders, kind=Task.Kind.PACK).order_by("order_id"))
    assert len(packs) == RACED_ORDERS

    # When: a person completes each pack task while the WMS reports each order packed, at the same moment
    outcomes = races.by_action(
        run_in_processes(
            "tests.orchestration.races:act",
            [("complete_tasks", [task.pk for task in packs]), ("report_packs", [order.pk for order in orders])],
        )
    )
    person, wms = outcomes["complete_tasks"], outcomes["report_packs"]

    # Then: neither side failed (a deadlock would have), each order was packed once, by one side or the other
    assert person["done"] + wms["done"] == RACED_ORDERS
    assert person["refused"] + wms["refused"] == RACED_ORDERS
    for order in orders:
        order.refresh_from_db()
        assert order.status == Order.Status.PACKED
        assert Shipment.objects.filter(order=order).count() == 1
    # ... and every pack task is done, completed once and not left open behind the pack
    for pack in packs:
        pack.refresh_from_db()
        assert (pack.status, pack.done_quantity) == (Task.Status.COMPLETED, pack.quantity)
        assert [h.status for h in pack.history.order_by("history_id")].count(Task.Status.COMPLETED) == 1


@pytest.mark.slow
def test_cancelling_orders_while_their_picks_are_completed_never_deadlocks_and_leaves_no_stock_promised():
    # Given: released orders of two lines, their picks dispatched to a picker
    orders = _released_orders("CANCELRACE", lines=2)
    first_picks = [Task.objects.filter(order=order, kind=Task.Kind.PICK).order_by("pk").first().pk for order in orders]

    # When: customer service cancels every order while the picker completes each one's first pick
    outcomes = races.by_action(
        run_in_processes(
            "tests.orchestration.races:act",
            [("cancel_orders", [order.pk for order in orders]), ("complete_tasks", first_picks)],
        )
    )
    agent, picker = outcomes["cancel_orders"], outcomes["complete_tasks"]

    # Then: every cancel went through (a pick does not stop one), and no process failed on a deadlock
    assert agent == {"done": RACED_ORDERS, "refused": 0}
    assert picker["done"] + picker["refused"] == RACED_ORDERS
    assert set(Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("status", flat=True)) == {
        Order.Status.CANCELLED
    }
    # ... nothing stays promised or open for them, and every stock row still agrees with its ledger
    numbers = [order.number for order in orders]
    assert not Reservation.objects.filter(order_number__in=numbers, status=Reservation.Status.RESERVED).exists()
    assert not Task.objects.filter(order__in=orders, status__in=Task.OPEN_STATES).exists()
    assert stock_discrepancies() == []


@pytest.mark.slow
def test_two_workers_rechecking_one_customers_credit_never_release_past_the_limit():
    # Given: six orders of 30.00 held while the customer owed 90.00 of a 100.00 limit, then a payment of it all
    location = LocationFactory(code="CREDIT-01")
    stock(ItemFactory(sku="CREDITRACE"), location, 100)
    customer = CustomerFactory(code="racing-payer", credit_limit=Decimal("100"), open_balance=Decimal("90"))
    orders = [processed_order(customer, location.warehouse, [("CREDITRACE", 3)]) for _ in range(6)]
    assert {order.status for order in orders} == {Order.Status.CREDIT_HOLD}
    Customer.objects.filter(pk=customer.pk).update(open_balance=0)

    # When: two workers re-check the customer's holds at the same moment (two credit reports, say)
    first, second = run_in_processes(
        "tests.orchestration.races:act", [("recheck_credit", [customer.pk]), ("recheck_credit", [customer.pk])]
    )

    # Then: together they released what fits (3 × 30.00 of 100.00), not what each would have alone twice over
    assert first["done"] + second["done"] == 3
    statuses = sorted(Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("status", flat=True))
    assert statuses == [Order.Status.ALLOCATED] * 3 + [Order.Status.CREDIT_HOLD] * 3
    assert services.credit_exposure(Customer.objects.get(pk=customer.pk)) == Decimal("90")


def test_a_credit_recheck_locks_only_the_held_orders_that_may_fit():
    # Given: a customer who owed 90.00 of 100.00 when two orders were held: 80.00, placed first, and 30.00
    location = LocationFactory(code="ROOM-01")
    stock(ItemFactory(sku="ROOM"), location, 100)
    customer = CustomerFactory(code="roomy", credit_limit=Decimal("100"), open_balance=Decimal("90"))
    large = processed_order(customer, location.warehouse, [("ROOM", 8)])
    small = processed_order(customer, location.warehouse, [("ROOM", 3)])
    assert {large.status, small.status} == {Order.Status.CREDIT_HOLD}
    Customer.objects.filter(pk=customer.pk).update(open_balance=Decimal("50"))  # room for 50.00 now
    other = other_session()
    try:
        # When: someone has the large order open while the re-check runs
        with other.transaction():
            other.execute("SELECT id FROM orchestration_order WHERE id = %s FOR NO KEY UPDATE", [large.pk])
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '2s'")  # a wait here would be the flaw: fail, do not hang
            released = services.orders_recheck_credit_holds(customer=customer, actor=ACTOR, reason="Payment")
    finally:
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")

    # Then: the small order went ahead without waiting for the large one, which could not fit anyway
    assert released == 1
    assert Order.objects.get(pk=small.pk).status == Order.Status.ALLOCATED
    assert Order.objects.get(pk=large.pk).status == Order.Status.CREDIT_HOLD
