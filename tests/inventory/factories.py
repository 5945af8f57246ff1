"""Builders for inventory tests: warehouses, locations, items, lots and stock booked through the ledger."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory

from inventory import services
from inventory.models import Item, Location, Lot, Receipt, StockLevel, Warehouse
from portal.actors import Actor

ACTOR = Actor.system("test")


class WarehouseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Warehouse
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"W{n}")
    name = factory.LazyAttribute(lambda w: f"Warehouse {w.code}")
    time_zone = "UTC"
    default_cutoff_time = dt.time(23, 59)


class LocationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Location
        django_get_or_create = ("warehouse", "code")

    warehouse = factory.SubFactory(WarehouseFactory)
    code = factory.Sequence(lambda n: f"A-{n:03d}")
    zone = "A"
    kind = Location.Kind.PICK
    pick_sequence = factory.Sequence(lambda n: (n + 1) * 10)


class ItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Item
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"ITEM-{n:05d}")
    description = factory.LazyAttribute(lambda i: f"Item {i.sku}")
    unit_value = Decimal("10.00")


class LotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Lot

    item = factory.SubFactory(ItemFactory, lot_tracked=True)
    code = factory.Sequence(lambda n: f"LOT{n}")
    expires_on = factory.LazyFunction(lambda: dt.date.today() + dt.timedelta(days=90))


class ReceiptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Receipt

    number = factory.Sequence(lambda n: f"ASN{n:05d}")
    supplier = "Supplier Ltd"
    warehouse = factory.SubFactory(WarehouseFactory)


def stock(item: Item, location: Location, quantity: int, *, lot: Lot | None = None) -> StockLevel:
    """A stock row holding `quantity`, received through the ledger (so check_stock agrees)."""
    services.stock_receive(item=item, location=location, quantity=quantity, lot=lot, actor=ACTOR, reason="Test stock")
    return StockLevel.objects.get(item=item, location=location, lot=lot)


def demand(order_line_id: int, item: Item, quantity: int, order_number: str = "SO-T") -> services.LineDemand:
    return services.LineDemand(
        order_line_id=order_line_id, order_number=order_number, item_id=item.pk, quantity=quantity
    )
