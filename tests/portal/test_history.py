"""History managers: one class per model, still bound to the instance they were read from."""

from __future__ import annotations

import pytest

from orchestration import services
from orchestration.models import Order
from tests.orchestration.factories import ACTOR, CustomerFactory, ItemFactory, LocationFactory, order_for, stock

pytestmark = pytest.mark.django_db


def test_each_instance_reads_its_own_history_through_one_manager_class():
    location = LocationFactory(code="H-01")
    stock(ItemFactory(sku="HIST-1"), location, 10)
    customer = CustomerFactory(code="hist")
    first = order_for(customer, location.warehouse, [("HIST-1", 1)])
    second = order_for(customer, location.warehouse, [("HIST-1", 1)])
    services.order_validate(order=second, actor=ACTOR)

    assert type(first.history) is type(second.history) is type(Order.history)
    assert first.history.count() == 1  # received
    assert list(second.history.order_by("history_id").values_list("status", "history_actor")) == [
        ("received", ACTOR.label),
        ("validated", ACTOR.label),
    ]
    assert Order.history.filter(number__in=[first.number, second.number]).count() == 3
