"""No oversell under real concurrency: processes (not threads) race for the last units on real PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import random

import pytest
from django.conf import settings
from django.db import connections
from django.db.models import F, Sum
from django.utils import timezone

from inventory.models import Reservation, StockLevel
from inventory.selectors import stock_discrepancies
from orchestration.models import Order, OrderLine
from tests.inventory import factories, race
from tests.orchestration.factories import CustomerFactory, validated_order

PROCESSES = 16
ORDERS_PER_PROCESS = 6
ITEMS = 8

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_sixteen_processes_racing_for_the_last_units_never_oversell_and_never_deadlock():
    # Given: 8 items, each with a few units spread over three locations (one a reserve rack), and 96
    # validated orders of one to four lines asking for far more than exists, their lines in shuffled item order
    rng = random.Random(20261125)
    warehouse = factories.WarehouseFactory(code="RACE")
    locations = [
        factories.LocationFactory(warehouse=warehouse, code=f"A-{n}", pick_sequence=10 * n) for n in range(1, 3)
    ] + [factories.LocationFactory(warehouse=warehouse, code="R-1", kind="reserve", pick_sequence=1000)]
    items = [factories.ItemFactory(sku=f"RACE-{n}") for n in range(ITEMS)]
    for item in items:
        for location in locations:
            factories.stock(item, location, rng.randint(1, 3))
    stock_that_existed = StockLevel.objects.filter(location__warehouse=warehouse).aggregate(t=Sum("on_hand"))["t"]
    customer = CustomerFactory(code="racer")
    orders = []
    for _ in range(PROCESSES * ORDERS_PER_PROCESS):
        chosen = rng.sample(items, rng.randint(1, 4))  # one line (one row, from the head) or several in any order
        orders.append(validated_order(customer, warehouse, [(item.sku, rng.randint(1, 3)) for item in chosen]))
    demanded = OrderLine.objects.filter(order__in=orders).aggregate(t=Sum("quantity"))["t"]
    assert demanded > 3 * stock_that_existed

    # When: 16 processes allocate their share of the orders at the same moment
    order_ids = [o.pk for o in orders]
    outcomes = _race([(race.allocate_orders, order_ids[index::PROCESSES]) for index in range(PROCESSES)])

    # Then: no process failed (a deadlock or a constraint violation would surface here)
    errors = [detail for status, detail in outcomes if status == "error"]
    assert not errors, errors[0]
    # ... no row is oversold, every row equals its ledger and its active reservations
    assert not StockLevel.objects.filter(on_hand__lt=F("reserved") + F("quarantined")).exists()
    assert stock_discrepancies() == []
    for level in StockLevel.objects.filter(location__warehouse=warehouse):
        active = level.reservations.filter(status=Reservation.Status.RESERVED).aggregate(t=Sum("quantity"))["t"] or 0
        assert level.reserved == active <= level.on_hand
    # ... and every unit that existed was promised exactly once: no more, no less
    reserved_units = Reservation.objects.filter(status=Reservation.Status.RESERVED).aggregate(t=Sum("quantity"))["t"]
    assert reserved_units == stock_that_existed
    assert OrderLine.objects.aggregate(t=Sum("allocated_quantity"))["t"] == stock_that_existed
    # ... and every order reached an allocation outcome that matches its lines
    statuses = set(Order.objects.values_list("status", flat=True))
    assert statuses <= {Order.Status.ALLOCATED, Order.Status.PARTIALLY_ALLOCATED, Order.Status.BACKORDERED}
    assert Order.Status.BACKORDERED in statuses  # demand exceeded supply: somebody lost the race


def test_arrivals_settled_in_batches_while_orders_allocate_never_deadlock_nor_reorder(monkeypatch):
    """Inbound workers settle runs of arrivals over many stock rows while allocations lock the same rows."""
    from integrations import inbound
    from integrations.models import InboundEvent, Partner
    from inventory.models import StockMovement

    # Given: 8 items with a little stock in three locations, 48 validated orders for them, and 80 stored
    # arrivals (10 per item) spread over the three locations in shuffled order
    monkeypatch.setattr(inbound, "enqueue_subject", lambda subject_key: None)  # the racing processes are the workers
    rng = random.Random(20261126)
    warehouse = factories.WarehouseFactory(code="RACE")
    locations = [factories.LocationFactory(warehouse=warehouse, code=f"A-{n}", pick_sequence=10 * n) for n in (1, 2)]
    locations.append(factories.LocationFactory(warehouse=warehouse, code="R-1", kind="reserve", pick_sequence=1000))
    items = [factories.ItemFactory(sku=f"RACE-{n}") for n in range(ITEMS)]
    for item in items:
        for location in locations:
            factories.stock(item, location, rng.randint(1, 3))
    customer = CustomerFactory(code="racer")
    orders = [
        validated_order(customer, warehouse, [(item.sku, rng.randint(1, 3)) for item in rng.sample(items, 3)])
        for _ in range(48)
    ]
    wms = Partner.objects.create(code="wms-race", name="WMS", kind=Partner.Kind.WMS, webhook_secret="s")
    sent: dict[str, list[str]] = {}
    for index in range(10):
        for item in rng.sample(items, len(items)):
            event_id = f"{item.sku}-{index}"
            payload = {"sku": item.sku, "warehouse": "RACE", "location": rng.choice(locations).code, "quantity": 2}
            accepted = inbound.event_accept(
                partner=wms, event_id=event_id, event_type="stock.received", occurred_at=timezone.now(), payload=payload
            )
            sent.setdefault(accepted.event.subject_key, []).append(event_id)
    subjects = list(sent)

    # When: 8 processes allocate the orders while 4 inbound workers drain every subject at the same moment
    outcomes = _race(
        [(race.allocate_orders, [o.pk for o in orders[index::8]]) for index in range(8)]
        + [(race.settle_arrivals, rng.sample(subjects, len(subjects))) for _ in range(4)]
    )

    # Then: nothing failed (a deadlock would surface as an error or as a retried event)
    errors = [detail for status, detail in outcomes if status == "error"]
    assert not errors, errors[0]
    assert set(InboundEvent.objects.values_list("status", "attempts")) == {("processed", 1)}
    # ... each subject's arrivals were applied once each, in the order they arrived
    for subject, event_ids in sent.items():
        sku = subject.rsplit(":", 1)[-1]
        applied = StockMovement.objects.filter(source_type="event", stock_level__item__sku=sku).order_by("pk")
        assert list(applied.values_list("source_ref", flat=True)) == event_ids
    # ... and stock still equals the ledger and the active reservations, with nothing oversold
    assert stock_discrepancies() == []
    assert not StockLevel.objects.filter(on_hand__lt=F("reserved") + F("quarantined")).exists()


def _race(jobs) -> list[tuple[str, object]]:
    """Run each (function, argument) job in a process of its own, all released at once; their outcomes."""
    database_name = connections["default"].settings_dict["NAME"]
    env = {"DJANGO_SETTINGS_MODULE": "portal.settings_test", "DATABASE_URL": os.environ.get("DATABASE_URL", "")}
    env = {key: value for key, value in env.items() if value}
    connections.close_all()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(jobs))
    results = context.Queue()
    workers = [
        context.Process(target=function, args=(env, database_name, argument, barrier, results), daemon=True)
        for function, argument in jobs
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=240) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert settings.DATABASES["default"]["NAME"]  # the parent's connection reopens lazily for the checks
    return outcomes
