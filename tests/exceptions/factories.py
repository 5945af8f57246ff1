"""Builders for exception tests: a warehouse with stock, customers, orders taken to a given state, people."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.contrib.auth.models import Group
from django.utils import timezone

from inventory import services as inventory
from inventory.models import Item, ItemSubstitute, Location, Warehouse
from orchestration import services as orchestration
from orchestration.models import Customer, Order, Task
from portal.actors import Actor
from portal.roles import Role
from tests.factories import UserFactory

SYSTEM = Actor.system("test")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
SHIP_TO = {"name": "Test", "lines": ["1 Main St"], "city": "Leeds", "postal_code": "LS1", "country": "GB"}


def at(minutes: float = 0, *, start: dt.datetime = T0) -> dt.datetime:
    return start + dt.timedelta(minutes=minutes)


class WarehouseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Warehouse
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"EX{n}")
    name = factory.LazyAttribute(lambda w: f"Warehouse {w.code}")
    time_zone = "UTC"
    default_cutoff_time = dt.time(23, 59)


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"EXI-{n:04d}")
    description = factory.LazyAttribute(lambda i: f"Item {i.sku}")
    unit_value = Decimal("10.00")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"excust{n}")
    name = factory.LazyAttribute(lambda c: f"Customer {c.code}")
    credit_limit = Decimal("10000000")
    service_tier = Customer.ServiceTier.STANDARD
    allows_split_shipment = True


def person(*roles: Role, username: str | None = None):
    """A user holding `roles` (groups fetched with get_or_create: transactional tests flush them)."""
    user = UserFactory(**({"username": username} if username else {}))
    for role in roles:
        group, _ = Group.objects.get_or_create(name=role.label)
        user.groups.add(group)
    return user


def as_user(user) -> Actor:
    return Actor.for_user(user)


def location(warehouse: Warehouse, code: str, *, sequence: int = 10, zone: str = "A") -> Location:
    return Location.objects.get_or_create(
        warehouse=warehouse, code=code, defaults={"zone": zone, "kind": Location.Kind.PICK, "pick_sequence": sequence}
    )[0]


def stock(item: Item, place: Location, quantity: int) -> None:
    inventory.stock_receive(item=item, location=place, quantity=quantity, actor=SYSTEM, reason="Test stock")


def stocked_item(warehouse: Warehouse, *, sku: str, quantity: int = 100, value: str = "10.00", code="A-01") -> Item:
    item = ItemFactory(sku=sku, unit_value=Decimal(value))
    stock(item, location(warehouse, code), quantity)
    return item


def order_for(customer: Customer, warehouse: Warehouse, lines: list[tuple[str, int]], **fields) -> Order:
    fields.setdefault("ship_to", SHIP_TO)
    return orchestration.order_create(
        customer=customer,
        warehouse=warehouse,
        actor=fields.pop("actor", SYSTEM),
        lines=[orchestration.LineInput(line_no=i, sku=sku, quantity=q) for i, (sku, q) in enumerate(lines, start=1)],
        requested_ship_date=timezone.localdate(),
        **fields,
    )


def processed_order(customer, warehouse, lines, **fields) -> Order:
    return orchestration.order_process(order=order_for(customer, warehouse, lines, **fields), actor=SYSTEM)


def short_pick(customer, warehouse, sku: str, quantity: int, picked: int) -> Task:
    """An order released and its (single) pick task completed short."""
    order = processed_order(customer, warehouse, [(sku, quantity)])
    assert order.status == Order.Status.RELEASED, order.status
    task = Task.objects.get(order=order, kind=Task.Kind.PICK)
    orchestration.task_dispatch(task=task, actor=SYSTEM)
    orchestration.task_complete(task=task, actor=SYSTEM, done_quantity=picked)
    task.refresh_from_db()
    return task


def substitute_link(item: Item, substitute: Item, rank: int = 1) -> None:
    ItemSubstitute.objects.get_or_create(item=item, substitute=substitute, defaults={"rank": rank})
