"""Property-based: random sequences of stock operations through the services never break the stock invariants.

After every step: each stock row equals the sum of its ledger (on hand, quarantined),
reserved equals its active reservations (and this model's own tally of them), and
0 ≤ reserved + quarantined ≤ on hand. Refused operations change nothing.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from inventory import services
from inventory.models import Reservation, StockLevel, StockMovement
from inventory.selectors import stock_discrepancies
from portal.actors import Actor
from portal.domain import DomainError
from tests.inventory import factories

ACTOR = Actor.system("hypothesis")
_machines = itertools.count(1)


class StockMachine(RuleBasedStateMachine):
    """Two items at two pick faces; receipts, reservations, picks (full and short), releases and adjustments."""

    reservations = Bundle("reservations")

    def __init__(self):
        super().__init__()
        run = next(_machines)
        self.warehouse = factories.WarehouseFactory(code=f"HYP{run}")
        self.locations = [
            factories.LocationFactory(warehouse=self.warehouse, code=f"P{n}", pick_sequence=10 * n) for n in (1, 2)
        ]
        self.items = [factories.ItemFactory(sku=f"HYP{run}-{n}") for n in (1, 2)]
        self.on_hand: dict[tuple[int, int], int] = defaultdict(int)  # (item, location) → expected on hand
        self.active: dict[int, tuple[int, int]] = {}  # reservation id → (stock row id, quantity)
        self.line_ids = itertools.count(run * 1_000_000)

    # --- helpers -------------------------------------------------------------------

    def _rows(self) -> list[StockLevel]:
        return list(StockLevel.objects.filter(location__warehouse=self.warehouse).order_by("pk"))

    def _snapshot(self):
        return (
            [(r.pk, r.on_hand, r.reserved, r.quarantined) for r in self._rows()],
            StockMovement.objects.count(),
            sorted(Reservation.objects.filter(warehouse=self.warehouse).values_list("pk", "status")),
        )

    # --- operations ----------------------------------------------------------------

    @initialize(quantity=st.integers(1, 10))
    def opening_stock(self, quantity):
        for item in self.items:
            self.receive(item_index=self.items.index(item), location_index=0, quantity=quantity)

    @rule(item_index=st.integers(0, 1), location_index=st.integers(0, 1), quantity=st.integers(1, 12))
    def receive(self, item_index, location_index, quantity):
        item, location = self.items[item_index], self.locations[location_index]
        services.stock_receive(item=item, location=location, quantity=quantity, actor=ACTOR, reason="Delivery")
        self.on_hand[(item.pk, location.pk)] += quantity

    @rule(target=reservations, lines=st.lists(st.tuples(st.integers(0, 1), st.integers(1, 15)), min_size=1, max_size=3))
    def reserve(self, lines):
        demands = [
            services.LineDemand(
                order_line_id=next(self.line_ids), order_number="SO-HYP", item_id=self.items[i].pk, quantity=q
            )
            for i, q in lines
        ]
        allocations = services.reservation_reserve_lines(
            warehouse=self.warehouse, demands=demands, actor=ACTOR, reason="Allocation"
        )
        made = []
        for demand, allocation in zip(demands, allocations, strict=True):
            assert 0 <= allocation.reserved <= demand.quantity
            for reservation in allocation.reservations:
                self.active[reservation.pk] = (reservation.stock_level_id, reservation.quantity)
                made.append(reservation.pk)
        return multiple(*made)

    @rule(reservation_id=reservations)
    def pick_in_full(self, reservation_id):
        self._pick(reservation_id, picked=None)

    @rule(reservation_id=reservations, data=st.data())
    def short_pick(self, reservation_id, data):
        quantity = Reservation.objects.get(pk=reservation_id).quantity
        self._pick(reservation_id, picked=data.draw(st.integers(0, quantity - 1), label="picked"))

    def _pick(self, reservation_id: int, *, picked: int | None):
        reservation = Reservation.objects.select_related("stock_level").get(pk=reservation_id)
        picked = reservation.quantity if picked is None else picked
        if reservation_id not in self.active:
            before = self._snapshot()
            with pytest.raises(DomainError, match="only reserved stock can be picked"):
                services.reservation_pick(reservation=reservation, picked_quantity=picked, actor=ACTOR, reason="Pick")
            assert self._snapshot() == before
            return
        services.reservation_pick(reservation=reservation, picked_quantity=picked, actor=ACTOR, reason="Pick")
        del self.active[reservation_id]
        self.on_hand[(reservation.item_id, reservation.stock_level.location_id)] -= picked

    @rule(reservation_id=reservations)
    def cancel(self, reservation_id):
        expected = self.active.pop(reservation_id, (None, 0))[1]
        released = services.reservation_release(reservations=[reservation_id], actor=ACTOR, reason="Order cancelled")
        assert released == expected  # an already-closed reservation releases nothing

    @rule(item_index=st.integers(0, 1), location_index=st.integers(0, 1), delta=st.integers(-12, 12).filter(bool))
    def adjust(self, item_index, location_index, delta):
        item, location = self.items[item_index], self.locations[location_index]
        level = StockLevel.objects.filter(item=item, location=location).first()
        if level is None:
            return
        before = self._snapshot()
        try:
            services.stock_adjust(stock_level=level, delta=delta, actor=ACTOR, reason="Found in the wrong bin")
        except DomainError as error:
            assert "would fall" in error.message or "nothing was changed" in error.message
            assert self._snapshot() == before
            return
        self.on_hand[(item.pk, location.pk)] += delta

    # --- invariants ----------------------------------------------------------------

    @invariant()
    def stock_equals_ledger_and_reservations(self):
        rows = self._rows()
        assert stock_discrepancies(stock_level_ids=[r.pk for r in rows]) == []
        reserved_by_row: dict[int, int] = defaultdict(int)
        for row_id, quantity in self.active.values():
            reserved_by_row[row_id] += quantity
        for row in rows:
            assert 0 <= row.reserved + row.quarantined <= row.on_hand
            assert min(row.reserved, row.quarantined) >= 0
            assert row.on_hand == self.on_hand[(row.item_id, row.location_id)]
            assert row.reserved == reserved_by_row[row.pk]


def test_random_stock_operations_keep_every_invariant(db):
    run_state_machine_as_test(
        StockMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            database=None,
        ),
    )
