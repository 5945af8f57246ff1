"""What processing an order holds locked while its transaction is open, seen from another database session."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction

from orchestration import services
from orchestration.models import Order
from tests.orchestration.factories import ACTOR, CustomerFactory, ItemFactory, LocationFactory, order_for, stock

pytestmark = pytest.mark.django_db(transaction=True)


def _other_session() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    other = psycopg.connect(**params, autocommit=True)
    other.execute("SET lock_timeout = '1s'")
    return other


def _free(session: psycopg.Connection, table: str, pk: int) -> bool:
    """Whether `session` can lock the row at once (FOR NO KEY UPDATE NOWAIT), as another order's service would."""
    try:
        with session.transaction():
            session.execute(f"SELECT id FROM {table} WHERE id = %s FOR NO KEY UPDATE NOWAIT", [pk])
        return True
    except psycopg.errors.LockNotAvailable:
        return False


def test_processing_an_order_locks_its_own_row_and_customer_but_never_the_shared_warehouse():
    # Given: a received order in a warehouse that every other order shares
    location = LocationFactory(code="A-01")
    item = ItemFactory(sku="LOCK-1")
    stock(item, location, 10)
    order = order_for(CustomerFactory(code="lock-a"), location.warehouse, [("LOCK-1", 2)])
    other = _other_session()
    try:
        # When: the order is processed in a transaction that is still open
        with transaction.atomic():
            processed = services.order_process(order=order, actor=ACTOR)
            assert processed.status == Order.Status.RELEASED

            # Then: the order and its customer (whose credit was just decided) are held ...
            assert not _free(other, "orchestration_order", order.pk)
            assert not _free(other, "orchestration_customer", order.customer_id)
            # ... but the warehouse is not: other customers' orders there go ahead meanwhile
            assert _free(other, "inventory_warehouse", order.warehouse_id)
        # ... and everything is free once the transaction ends
        assert _free(other, "orchestration_order", order.pk)
    finally:
        other.close()
