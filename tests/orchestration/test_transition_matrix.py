"""Allowed and refused transitions of orders, tasks and shipments, one parametrised matrix per state machine.

Each case forces the row into a source state, calls the SERVICE (never the raw
transition) and checks: allowed → the target state, a history row with the actor and
reason, and the event; refused → TransitionRefused saying why, and nothing changed
(state, history rows, events, reservations, tasks).
"""

from __future__ import annotations

import pytest

from inventory.models import Reservation, StockMovement
from orchestration import events
from orchestration import services as orders
from orchestration.models import Customer, Order, Shipment, Task
from portal.actors import Actor
from portal.domain import TransitionRefused
from portal.models import DomainEvent
from tests.orchestration import factories

ACTOR = Actor.system("matrix")
REASON = "Matrix check"
S = Order.Status

ORDER_ACTIONS = {
    # service call, {source: target}, event the allowed call publishes
    "validate": (
        lambda o: orders.order_validate(order=o, actor=ACTOR, reason=REASON),
        {S.RECEIVED: S.VALIDATED},
        events.ORDER_VALIDATED,
    ),
    "check_credit": (
        lambda o: orders.order_check_credit(order=o, actor=ACTOR, reason=REASON),
        {S.VALIDATED: S.CREDIT_HOLD},
        events.ORDER_CREDIT_HOLD,
    ),
    "release_credit_hold": (
        lambda o: orders.order_release_credit_hold(order=o, actor=ACTOR, reason=REASON),
        {S.CREDIT_HOLD: S.ALLOCATED},
        events.ORDER_CREDIT_RELEASED,
    ),
    "allocate": (
        lambda o: orders.order_allocate(order=o, actor=ACTOR, reason=REASON),
        dict.fromkeys([S.VALIDATED, *Order.ALLOCATION_STATES], S.ALLOCATED),
        events.ORDER_ALLOCATED,
    ),
    "release": (
        lambda o: orders.order_release(order=o, actor=ACTOR, reason=REASON),
        dict.fromkeys([S.ALLOCATED, S.PARTIALLY_ALLOCATED], S.RELEASED),
        events.ORDER_RELEASED,
    ),
    "hold": (
        lambda o: orders.order_hold(order=o, actor=ACTOR, reason=REASON),
        dict.fromkeys(Order.HOLDABLE, S.ON_HOLD),
        events.ORDER_HELD,
    ),
    "unhold": (
        lambda o: orders.order_unhold(order=o, actor=ACTOR, reason=REASON),
        {S.ON_HOLD: S.ALLOCATED},
        events.ORDER_UNHELD,
    ),
    "cancel": (
        lambda o: orders.order_cancel(order=o, actor=ACTOR, reason=REASON),
        dict.fromkeys(Order.CANCELLABLE, S.CANCELLED),
        events.ORDER_CANCELLED,
    ),
    "invoice": (
        lambda o: orders.order_invoice(order=o, actor=ACTOR, reason=REASON),
        {S.SHIPPED: S.INVOICED},
        events.ORDER_INVOICED,
    ),
    "close": (
        lambda o: orders.order_close(order=o, actor=ACTOR, reason=REASON),
        {S.INVOICED: S.CLOSED},
        events.ORDER_CLOSED,
    ),
}


def _everything(order: Order) -> tuple:
    order.refresh_from_db()
    return (
        order.status,
        order.history.count(),
        DomainEvent.objects.count(),
        Reservation.objects.count(),
        StockMovement.objects.count(),
        Task.objects.count(),
        list(order.lines.values_list("status", "allocated_quantity")),
    )


def _assert_refused(call, instance, snapshot, state_label: str) -> None:
    before = snapshot(instance)
    with pytest.raises(TransitionRefused) as refused:
        call(instance)
    message = refused.value.message.lower()
    assert state_label.lower() in message or str(before[0]).replace("_", " ") in message.replace("_", " "), message
    assert snapshot(instance) == before


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("action", list(ORDER_ACTIONS))
def test_order_transition_matrix(action, state, warehouse, customer, tape):
    call, allowed, event_name = ORDER_ACTIONS[action]
    if action == "check_credit":
        customer.credit_status = Customer.CreditStatus.BLOCKED
        customer.save()
    order = factories.order_for(customer, warehouse, [("TAPE", 5)])
    factories.force_status(order, state)
    if state not in allowed:
        _assert_refused(call, order, _everything, S(state).label)
        return
    history_before = order.history.count()
    call(order)
    order.refresh_from_db()
    assert order.status == allowed[state]
    new_history = list(order.history.order_by("history_id")[history_before:])
    assert new_history, "an allowed transition records history"
    assert any(h.history_actor == ACTOR.label for h in new_history)
    # the credit check records why it held the order; every other action records the reason it was given
    reason = "credit-blocked" if action == "check_credit" else REASON
    assert any(reason in h.history_reason for h in new_history)
    event = DomainEvent.objects.filter(name=event_name, subject_id=str(order.pk)).latest("pk")
    assert event.actor == ACTOR.label
    assert event.payload["order"] == order.number


T = Task.Status
OPEN = Task.OPEN_STATES
TASK_ACTIONS = {
    "dispatch": (
        lambda t: orders.task_dispatch(task=t, actor=ACTOR, reason=REASON),
        dict.fromkeys([T.CREATED, T.DISPATCHED, T.ACKNOWLEDGED], T.DISPATCHED),
        events.TASK_DISPATCHED,
    ),
    "acknowledge": (
        lambda t: orders.task_acknowledge(task=t, actor=ACTOR, reason=REASON),
        {T.DISPATCHED: T.ACKNOWLEDGED},
        events.TASK_ACKNOWLEDGED,
    ),
    "start": (
        lambda t: orders.task_start(task=t, actor=ACTOR, reason=REASON),
        dict.fromkeys([T.CREATED, T.DISPATCHED, T.ACKNOWLEDGED], T.IN_PROGRESS),
        events.TASK_STARTED,
    ),
    "complete": (
        lambda t: orders.task_complete(task=t, actor=ACTOR, reason=REASON),
        dict.fromkeys([T.DISPATCHED, T.ACKNOWLEDGED, T.IN_PROGRESS], T.COMPLETED),
        events.TASK_COMPLETED,
    ),
    "fail": (
        lambda t: orders.task_fail(task=t, actor=ACTOR, reason=REASON),
        dict.fromkeys(OPEN, T.FAILED),
        events.TASK_FAILED,
    ),
    "cancel": (
        lambda t: orders.task_cancel(task=t, actor=ACTOR, reason=REASON),
        dict.fromkeys(OPEN, T.CANCELLED),
        events.TASK_CANCELLED,
    ),
    "fall_back_to_manual": (
        lambda t: orders.task_fall_back_to_manual(task=t, actor=ACTOR, reason=REASON),
        dict.fromkeys([T.DISPATCHED, T.ACKNOWLEDGED], T.CREATED),
        events.TASK_FELL_BACK,
    ),
}


def _task_everything(task: Task) -> tuple:
    task.refresh_from_db()
    return (task.status, task.history.count(), DomainEvent.objects.count(), Task.objects.count(), task.instruction_seq)


@pytest.mark.parametrize("state", list(T))
@pytest.mark.parametrize("action", list(TASK_ACTIONS))
def test_task_transition_matrix(action, state, warehouse, location_a):
    call, allowed, event_name = TASK_ACTIONS[action]
    task = Task.objects.create(kind=Task.Kind.COUNT, warehouse=warehouse, zone="A", location=location_a)
    factories.force_status(task, state)
    if state not in allowed:
        _assert_refused(call, task, _task_everything, T(state).label)
        return
    history_before = task.history.count()
    call(task)
    task.refresh_from_db()
    assert task.status == allowed[state]
    latest = task.history.latest("history_id")
    assert task.history.count() == history_before + 1
    assert (latest.history_actor, latest.history_reason) == (ACTOR.label, REASON)
    assert DomainEvent.objects.filter(name=event_name, subject_id=str(task.pk), actor=ACTOR.label).exists()


@pytest.mark.parametrize("state", list(T))
def test_only_a_failed_task_is_retried_and_the_retry_is_a_fresh_task(state, warehouse):
    task = Task.objects.create(kind=Task.Kind.COUNT, warehouse=warehouse, quantity=3)
    factories.force_status(task, state)
    if state != T.FAILED:
        _assert_refused(
            lambda t: orders.task_retry(task=t, actor=ACTOR, reason=REASON), task, _task_everything, T(state).label
        )
        return
    clone = orders.task_retry(task=task, actor=ACTOR, reason=REASON)
    assert (clone.status, clone.kind, clone.quantity) == (T.CREATED, task.kind, 3)
    task.refresh_from_db()
    assert task.status == T.FAILED
    assert DomainEvent.objects.get(name=events.TASK_CREATED, subject_id=str(clone.pk)).payload["retry_of"] == task.pk


SH = Shipment.Status
SHIPMENT_ACTIONS = {
    "ship": (
        lambda s: orders.shipment_ship(shipment=s, carrier="DPD", tracking_number="TRK1", actor=ACTOR, reason=REASON),
        {SH.PACKED: SH.SHIPPED},
        events.SHIPMENT_SHIPPED,
    ),
    "confirm": (
        lambda s: orders.shipment_confirm(shipment=s, actor=ACTOR, reason=REASON),
        {SH.SHIPPED: SH.CONFIRMED},
        events.SHIPMENT_CONFIRMED,
    ),
}


def _shipment_everything(shipment: Shipment) -> tuple:
    shipment.refresh_from_db()
    order = Order.objects.get(pk=shipment.order_id)
    return (
        shipment.status,
        shipment.history.count(),
        DomainEvent.objects.count(),
        order.status,
        shipment.tracking_number,
    )


@pytest.mark.parametrize("state", list(SH))
@pytest.mark.parametrize("action", list(SHIPMENT_ACTIONS))
def test_shipment_transition_matrix(action, state, warehouse, customer, tape):
    call, allowed, event_name = SHIPMENT_ACTIONS[action]
    order = factories.order_for(customer, warehouse, [("TAPE", 2)])
    factories.force_status(order, S.PACKED)
    shipment = Shipment.objects.create(number=f"SH-M-{action}-{state}", order=order, warehouse=warehouse)
    factories.force_status(shipment, state)
    if state not in allowed:
        _assert_refused(call, shipment, _shipment_everything, SH(state).label)
        return
    call(shipment)
    shipment.refresh_from_db()
    assert shipment.status == allowed[state]
    latest = shipment.history.latest("history_id")
    assert (latest.history_actor, latest.history_reason) == (ACTOR.label, REASON)
    assert DomainEvent.objects.filter(name=event_name, subject_id=str(shipment.pk)).exists()
    if action == "ship":
        order.refresh_from_db()
        assert order.status == S.SHIPPED  # the packed order ships with its shipment
