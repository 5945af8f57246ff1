"""Builders for order tests: customers, orders through the services, and orders forced into a state."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.utils import timezone

from orchestration import services
from orchestration.models import Customer, Order
from portal.actors import Actor
from tests.inventory.factories import ACTOR, ItemFactory, LocationFactory, WarehouseFactory, stock  # noqa: F401

SHIP_TO = {"name": "Test Buyer", "lines": ["1 Main St"], "city": "Leeds", "postal_code": "LS1 4AP", "country": "GB"}
PERSON = Actor.system("test-person")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"cust{n}")
    name = factory.LazyAttribute(lambda c: f"Customer {c.code}")
    credit_limit = Decimal("10000000")
    allows_split_shipment = True


def order_for(customer: Customer, warehouse, lines: list[tuple[str, int]], **fields) -> Order:
    """A received order (not processed); lines are (sku, quantity)."""
    fields.setdefault("ship_to", SHIP_TO)
    fields.setdefault("requested_ship_date", timezone.localdate())
    return services.order_create(
        customer=customer,
        warehouse=warehouse,
        actor=ACTOR,
        lines=[services.LineInput(line_no=i, sku=sku, quantity=q) for i, (sku, q) in enumerate(lines, start=1)],
        **fields,
    )


def validated_order(customer: Customer, warehouse, lines: list[tuple[str, int]], **fields) -> Order:
    order = services.order_validate(order=order_for(customer, warehouse, lines, **fields), actor=ACTOR)
    assert order.status == Order.Status.VALIDATED, order.status
    return order


def processed_order(customer: Customer, warehouse, lines: list[tuple[str, int]], **fields) -> Order:
    """Validated, credit-checked, allocated and (policy permitting) released."""
    return services.order_process(order=order_for(customer, warehouse, lines, **fields), actor=ACTOR)


def force_status(instance, status: str) -> None:
    """Put a row into `status` directly (test set-up only: services never do this)."""
    type(instance).objects.filter(pk=instance.pk).update(status=status)
    instance.refresh_from_db()
