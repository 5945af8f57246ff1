"""Allowed and refused transitions of reservations, receipts and cycle counts, through the services.

Allowed → the target state with a history row (actor, reason); refused → TransitionRefused
naming the current state, and nothing changed (state, history, events, ledger, quantities).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from inventory import services
from inventory.models import CycleCount, Receipt, ReceiptLine, Reservation, StockLevel, StockMovement
from portal.actors import Actor
from portal.domain import TransitionRefused
from portal.models import DomainEvent
from tests.inventory import factories

ACTOR = Actor.system("matrix")
COUNTER = Actor.system("counter")
REASON = "Matrix check"


def _snapshot(instance) -> tuple:
    instance.refresh_from_db()
    return (
        instance.status,
        instance.history.count(),
        DomainEvent.objects.count(),
        StockMovement.objects.count(),
        list(StockLevel.objects.order_by("pk").values_list("on_hand", "reserved", "quarantined")),
    )


def _refused(call, instance, label: str) -> None:
    before = _snapshot(instance)
    with pytest.raises(TransitionRefused) as refused:
        call(instance)
    assert label.lower() in refused.value.message.lower(), refused.value.message
    assert _snapshot(instance) == before


def _recorded(instance, *, history_before: int, reason: str = REASON, actor: Actor = ACTOR) -> None:
    assert instance.history.count() > history_before
    latest = instance.history.latest("history_id")
    assert (latest.history_actor, latest.history_reason) == (actor.label, reason)


# --- reservations --------------------------------------------------------------------

R = Reservation.Status


@pytest.fixture
def reservation(warehouse, pick_a, item):
    factories.stock(item, pick_a, 10)
    allocation = services.reservation_reserve_lines(
        warehouse=warehouse, demands=[factories.demand(1, item, 4)], actor=ACTOR, reason="Allocated"
    )[0]
    return Reservation.objects.get(pk=allocation.reservations[0].pk)


@pytest.mark.parametrize("state", list(R))
def test_only_reserved_stock_can_be_picked(state, reservation):
    Reservation.objects.filter(pk=reservation.pk).update(status=state)
    reservation.refresh_from_db()
    pick = lambda r: services.reservation_pick(reservation=r, picked_quantity=4, actor=ACTOR, reason=REASON)  # noqa: E731
    if state != R.RESERVED:
        _refused(pick, reservation, state)
        return
    result = pick(reservation)
    reservation.refresh_from_db()
    assert (reservation.status, reservation.picked_quantity, result.shortfall) == (R.PICKED, 4, 0)
    _recorded(reservation, history_before=1)
    level = reservation.stock_level
    level.refresh_from_db()
    assert (level.on_hand, level.reserved) == (6, 0)


@pytest.mark.parametrize("state", list(R))
def test_release_gives_back_reserved_stock_and_skips_closed_reservations(state, reservation):
    Reservation.objects.filter(pk=reservation.pk).update(status=state)
    before = _snapshot(reservation)
    released = services.reservation_release(reservations=[reservation], actor=ACTOR, reason=REASON)
    reservation.refresh_from_db()
    if state != R.RESERVED:
        # releasing is idempotent: a reservation that is not active is left alone and nothing is given back
        assert released == 0
        assert _snapshot(reservation) == before
        return
    assert (released, reservation.status) == (4, R.RELEASED)
    assert reservation.closed_at is not None
    _recorded(reservation, history_before=1)
    assert StockLevel.objects.get(pk=reservation.stock_level_id).reserved == 0


@pytest.mark.parametrize("state", list(R))
def test_only_active_reservations_expire(state, reservation):
    Reservation.objects.filter(pk=reservation.pk).update(
        status=state, expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    before = _snapshot(reservation)
    expired = services.reservation_expire_due(now=timezone.now(), actor=ACTOR)
    reservation.refresh_from_db()
    if state != R.RESERVED:
        assert expired == 0
        assert _snapshot(reservation) == before
        return
    assert (expired, reservation.status) == (1, R.EXPIRED)
    assert StockLevel.objects.get(pk=reservation.stock_level_id).reserved == 0
    _recorded(reservation, history_before=1, reason="Reservation expired")


# --- receipts ------------------------------------------------------------------------

RC = Receipt.Status


@pytest.fixture
def receipt(warehouse, item):
    return services.receipt_create(
        number="ASN-1",
        warehouse=warehouse,
        supplier="Acme Supply",
        lines=[{"item": item, "expected_quantity": 10}],
        actor=ACTOR,
        reason="ASN received",
    )


RECEIPT_ACTIONS = {
    "receive": {RC.EXPECTED: RC.RECEIVING, RC.RECEIVING: RC.RECEIVING},
    "close": {RC.EXPECTED: RC.CLOSED, RC.RECEIVING: RC.CLOSED},
    "cancel": {RC.EXPECTED: RC.CANCELLED},
}


@pytest.mark.parametrize("state", list(RC))
@pytest.mark.parametrize("action", list(RECEIPT_ACTIONS))
def test_receipt_transition_matrix(action, state, receipt, pick_a):
    line = ReceiptLine.objects.get(receipt=receipt)
    calls = {
        "receive": lambda r: services.receipt_receive_line(
            line=line, quantity=10, location=pick_a, actor=ACTOR, reason=REASON
        ),
        "close": lambda r: services.receipt_close(receipt=r, actor=ACTOR, reason=REASON),
        "cancel": lambda r: services.receipt_cancel(receipt=r, actor=ACTOR, reason=REASON),
    }
    Receipt.objects.filter(pk=receipt.pk).update(status=state)
    receipt.refresh_from_db()
    allowed = RECEIPT_ACTIONS[action]
    if state not in allowed:
        _refused(calls[action], receipt, state)
        return
    history_before = receipt.history.count()
    calls[action](receipt)
    receipt.refresh_from_db()
    assert receipt.status == allowed[state]
    if (action, state) != ("receive", RC.RECEIVING):  # receiving more on a receiving receipt is no transition
        _recorded(receipt, history_before=history_before)
    if action == "receive":
        line.refresh_from_db()
        assert line.received_quantity == 10
        assert StockLevel.objects.get(item=line.item, location=pick_a).on_hand == 10


# --- cycle counts --------------------------------------------------------------------

CC = CycleCount.Status


@pytest.fixture
def count(pick_a, item):
    level = factories.stock(item, pick_a, 100)
    return services.count_request(stock_level=level, actor=ACTOR, reason="Routine count")


COUNT_ACTIONS = {
    "record": ({CC.OPEN: CC.COUNTED}, COUNTER),
    "approve": ({CC.COUNTED: CC.APPROVED}, ACTOR),
    "reject": ({CC.OPEN: CC.REJECTED, CC.COUNTED: CC.REJECTED}, ACTOR),
}


@pytest.mark.parametrize("state", list(CC))
@pytest.mark.parametrize("action", list(COUNT_ACTIONS))
def test_cycle_count_transition_matrix(action, state, count):
    allowed, actor = COUNT_ACTIONS[action]
    if state != CC.OPEN:
        # a recorded count of 80 against 100 is beyond tolerance: it waits for approval
        CycleCount.objects.filter(pk=count.pk).update(
            status=state, expected_quantity=100, counted_quantity=80, counted_by_actor=COUNTER.label
        )
        count.refresh_from_db()
    calls = {
        "record": lambda c: services.count_record(count=c, counted_quantity=80, actor=COUNTER, reason=REASON),
        "approve": lambda c: services.count_approve(count=c, actor=ACTOR, reason=REASON),
        "reject": lambda c: services.count_reject(count=c, actor=ACTOR, reason=REASON),
    }
    if state not in allowed:
        _refused(calls[action], count, state)
        return
    history_before = count.history.count()
    calls[action](count)
    count.refresh_from_db()
    assert count.status == allowed[state]
    _recorded(count, history_before=history_before, actor=actor)
    on_hand = StockLevel.objects.get(pk=count.stock_level_id).on_hand
    assert on_hand == (80 if action == "approve" else 100)
