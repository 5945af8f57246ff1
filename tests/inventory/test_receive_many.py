"""stock_receive_many: several arrivals booked at once through the ledger, all or nothing."""

from __future__ import annotations

import pytest

from inventory import services
from inventory.models import StockLevel, StockMovement
from inventory.selectors import stock_discrepancies
from portal.domain import InvalidInput
from portal.models import DomainEvent
from tests.inventory import factories
from tests.inventory.factories import ACTOR

pytestmark = pytest.mark.django_db


def arrival(item, location, quantity, **fields) -> services.StockArrival:
    return services.StockArrival(item=item, location=location, quantity=quantity, **fields)


def test_arrivals_are_added_through_the_ledger_in_the_order_given(pick_a, pick_b, item):
    factories.stock(item, pick_a, 10)
    lot_item = factories.ItemFactory(sku="SERUM", lot_tracked=True)
    lot = factories.LotFactory(item=lot_item, code="L-1")

    movements = services.stock_receive_many(
        arrivals=[
            arrival(item, pick_a, 3, source_ref="asn-1"),
            arrival(item, pick_b, 4, source_ref="asn-2", reason="Cross-dock from DC2"),
            arrival(item, pick_a, 5, source_ref="asn-3"),
            arrival(lot_item, pick_b, 6, lot=lot, source_ref="asn-4"),
        ],
        actor=ACTOR,
        reason="Trailer 7 unloaded",
        source_type="asn",
    )

    assert [m.source_ref for m in movements] == ["asn-1", "asn-2", "asn-3", "asn-4"]
    assert StockLevel.objects.get(item=item, location=pick_a).on_hand == 18
    assert StockLevel.objects.get(item=item, location=pick_b).on_hand == 4  # a new row
    assert StockLevel.objects.get(item=lot_item, lot=lot).on_hand == 6
    booked = StockMovement.objects.filter(source_type="asn").order_by("pk")
    assert list(booked.values_list("source_ref", "kind", "on_hand_delta", "reason", "actor")) == [
        ("asn-1", "receipt", 3, "Trailer 7 unloaded", "system:test"),
        ("asn-2", "receipt", 4, "Cross-dock from DC2", "system:test"),
        ("asn-3", "receipt", 5, "Trailer 7 unloaded", "system:test"),
        ("asn-4", "receipt", 6, "Trailer 7 unloaded", "system:test"),
    ]
    published = DomainEvent.objects.filter(name="inventory.stock_received").order_by("pk")
    assert [(e.payload["location"], e.payload["quantity"], e.reason) for e in published][-4:] == [
        ("A-01", 3, "Trailer 7 unloaded"),
        ("B-01", 4, "Cross-dock from DC2"),
        ("A-01", 5, "Trailer 7 unloaded"),
        ("B-01", 6, "Trailer 7 unloaded"),
    ]
    assert stock_discrepancies() == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"quantity": 0}, "Received quantity must be positive."),
        ({"lot_tracked": True}, "is lot-tracked: give the lot."),
    ],
)
def test_one_bad_arrival_refuses_them_all_and_changes_nothing(pick_a, item, bad, message):
    factories.stock(item, pick_a, 10)
    other = factories.ItemFactory(sku="OTHER", lot_tracked=bad.get("lot_tracked", False))
    movements_before = StockMovement.objects.count()

    with pytest.raises(InvalidInput, match=message):
        services.stock_receive_many(
            arrivals=[arrival(item, pick_a, 2), arrival(other, pick_a, bad.get("quantity", 1))],
            actor=ACTOR,
            reason="Delivery",
        )

    assert StockLevel.objects.get(item=item, location=pick_a).on_hand == 10
    assert not StockLevel.objects.filter(item=other).exists()
    assert StockMovement.objects.count() == movements_before


def test_a_reason_is_required(pick_a, item):
    with pytest.raises(InvalidInput, match="A reason is required"):
        services.stock_receive_many(arrivals=[arrival(item, pick_a, 1)], actor=ACTOR, reason=" ")
    assert not StockMovement.objects.exists()
