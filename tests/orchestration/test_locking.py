"""What processing an order holds locked while its transaction is open, seen from another database session."""

from __future__ import annotations

import pytest
from django.db import transaction

from orchestration import services
from orchestration.models import Order
from tests.orchestration.factories import ACTOR, CustomerFactory, ItemFactory, LocationFactory, order_for, stock
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
