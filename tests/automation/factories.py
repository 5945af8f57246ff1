"""Builders for automation tests: a small network with machine zones, orders released into them, units."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.utils import timezone

from automation import services
from automation.models import Equipment, Rule
from inventory import services as inventory
from inventory.models import Item, Location, Warehouse
from orchestration import services as orchestration
from orchestration.models import Customer, Order, Task
from portal.actors import Actor

ACTOR = Actor.system("test")


class WarehouseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Warehouse
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"WH{n}")
    name = factory.LazyAttribute(lambda w: f"Warehouse {w.code}")
    time_zone = "UTC"
    default_cutoff_time = dt.time(23, 59)


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"SKU-{n:04d}")
    description = factory.LazyAttribute(lambda i: f"Item {i.sku}")
    unit_value = Decimal("10.00")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"cust{n}")
    name = factory.LazyAttribute(lambda c: f"Customer {c.code}")
    credit_limit = Decimal("10000000")
    service_tier = Customer.ServiceTier.STANDARD
    allows_split_shipment = True


def location(warehouse: Warehouse, code: str, zone: str, sequence: int = 10) -> Location:
    return Location.objects.get_or_create(
        warehouse=warehouse, code=code, defaults={"zone": zone, "kind": Location.Kind.PICK, "pick_sequence": sequence}
    )[0]


def stocked_item(
    warehouse: Warehouse, *, zone: str, quantity: int = 1000, sku: str | None = None, value: str = "10.00"
) -> Item:
    """An item with stock at one location in `zone` (the location is named after the zone)."""
    item = ItemFactory(**({"sku": sku} if sku else {}), unit_value=Decimal(value))
    place = location(warehouse, f"{zone}-01", zone)
    inventory.stock_receive(item=item, location=place, quantity=quantity, actor=ACTOR, reason="Test stock")
    return item


SHIP_TO = {"name": "Test", "lines": ["1 Main St"], "city": "Leeds", "postal_code": "LS1", "country": "GB"}


def order_for(customer: Customer, warehouse: Warehouse, lines: list[tuple[str, int]], **fields) -> Order:
    """A received order (not processed)."""
    return orchestration.order_create(
        customer=customer,
        warehouse=warehouse,
        actor=ACTOR,
        ship_to=SHIP_TO,
        lines=[orchestration.LineInput(line_no=i, sku=sku, quantity=q) for i, (sku, q) in enumerate(lines, start=1)],
        requested_ship_date=timezone.localdate(),
        **fields,
    )


def released_order(customer: Customer, warehouse: Warehouse, lines: list[tuple[str, int]], **fields) -> Order:
    """An order taken through validation, credit, allocation and release: its pick tasks exist."""
    order = orchestration.order_process(order=order_for(customer, warehouse, lines, **fields), actor=ACTOR)
    assert order.status == Order.Status.RELEASED, order.status
    return order


def pick_tasks(order: Order) -> list[Task]:
    return list(Task.objects.filter(order=order, kind=Task.Kind.PICK).order_by("pk"))


def unit(
    warehouse: Warehouse,
    code: str,
    *,
    zone: str = "AMR",
    kinds=("pick",),
    zones=None,
    kind: str = Equipment.Kind.AMR_FLEET,
    now: dt.datetime | None = None,
    **settings,
) -> Equipment:
    """A registered unit that has just reported a heartbeat."""
    equipment = services.equipment_register(
        code=code,
        name=code.upper(),
        kind=kind,
        warehouse=warehouse,
        zone=zone,
        capabilities={"task_kinds": list(kinds), "zones": list(zones or [zone])},
        actor=ACTOR,
        **settings,
    )
    services.equipment_heartbeat(equipment=equipment, now=now or timezone.now(), actor=ACTOR)
    equipment.refresh_from_db()
    return equipment


def rule(
    name: str,
    trigger: str,
    actions: list,
    conditions: dict | None = None,
    *,
    order: int = 100,
    mode: str = Rule.Mode.AUTOMATIC,
    enabled: bool = True,
) -> Rule:
    made = Rule(
        name=name,
        trigger=trigger,
        conditions=conditions or {},
        actions=actions,
        order=order,
        mode=mode,
        enabled=enabled,
    )
    made.full_clean()
    made.save()
    return made
