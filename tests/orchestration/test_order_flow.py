"""The order-to-ship flow through the services: given / when / then, with history rows and outbox events."""

from __future__ import annotations

import pytest

from inventory.models import CycleCount, Reservation, StockLevel
from inventory.selectors import stock_discrepancies
from orchestration import events, services
from orchestration.models import Order, OrderLine, Shipment, Task
from portal.actors import Actor
from portal.domain import InvalidInput, TransitionRefused
from portal.models import DomainEvent
from tests.inventory import factories as stock_factories
from tests.orchestration import factories

SAM = Actor.system("sam")


def _events(name: str, subject) -> list[DomainEvent]:
    return list(DomainEvent.objects.filter(name=name, subject_id=str(subject.pk)).order_by("pk"))


def test_a_received_order_is_recorded_with_its_actor_reason_and_event(warehouse, customer, tape):
    order = services.order_create(
        customer=customer,
        warehouse=warehouse,
        lines=[services.LineInput(line_no=1, sku="TAPE", quantity=3)],
        actor=Actor.partner("erp"),
        reason="EDI 850 received",
        external_ref="PO-1",
        ship_to=factories.SHIP_TO,
    )
    assert order.status == Order.Status.RECEIVED
    assert order.total_value == 30
    created = order.history.get()
    assert (created.history_type, created.history_actor, created.history_reason) == (
        "+",
        "partner:erp",
        "EDI 850 received",
    )
    (event,) = _events(events.ORDER_RECEIVED, order)
    assert (event.actor, event.payload["external_ref"], event.payload["customer"]) == ("partner:erp", "PO-1", "acme")


def test_bad_lines_are_refused_with_field_errors_and_nothing_is_created(warehouse, customer, tape):
    with pytest.raises(InvalidInput) as refused:
        services.order_create(
            customer=customer,
            warehouse=warehouse,
            lines=[services.LineInput(1, "NOPE", 1), services.LineInput(1, "TAPE", 0)],
            actor=SAM,
        )
    assert set(refused.value.fields) == {"lines.0.sku", "lines.1.quantity", "lines.1.line_no"}
    assert not Order.objects.exists() and not DomainEvent.objects.filter(name=events.ORDER_RECEIVED).exists()


@pytest.mark.parametrize(
    ("tape_qty", "gloves_qty", "outcome", "line_statuses"),
    [
        (10, 5, Order.Status.ALLOCATED, ["allocated", "allocated"]),
        (10, 80, Order.Status.PARTIALLY_ALLOCATED, ["allocated", "partial"]),
    ],
)
def test_allocation_reserves_what_exists_and_reports_the_rest(
    tape_qty, gloves_qty, outcome, line_statuses, warehouse, customer, tape, gloves
):
    order = factories.validated_order(customer, warehouse, [("TAPE", tape_qty), ("GLOVES", gloves_qty)])
    services.order_allocate(order=order, actor=SAM, reason="Wave 7")
    order.refresh_from_db()
    assert order.status == outcome
    assert list(order.lines.order_by("line_no").values_list("status", flat=True)) == line_statuses
    assert Reservation.objects.filter(order_number=order.number, status="reserved").count() == 2
    (event,) = _events(events.ORDER_ALLOCATED, order)
    assert event.payload["outcome"] == outcome
    assert [line["shortfall"] for line in event.payload["lines"]] == [0, max(0, gloves_qty - 50)]
    assert order.history.latest("history_id").history_reason == "Wave 7"
    assert stock_discrepancies() == []


def test_nothing_in_stock_backorders_the_order(warehouse, customer, location_a):
    stock_factories.ItemFactory(sku="EMPTY")
    order = factories.validated_order(customer, warehouse, [("EMPTY", 2)])
    services.order_allocate(order=order, actor=SAM)
    order.refresh_from_db()
    assert order.status == Order.Status.BACKORDERED
    assert order.lines.get().status == OrderLine.Status.BACKORDERED


def test_release_is_refused_with_the_policy_reasons_and_changes_nothing(warehouse, customer, tape, gloves):
    customer.allows_split_shipment = False
    customer.save()
    order = factories.validated_order(customer, warehouse, [("TAPE", 1), ("GLOVES", 99)])
    services.order_allocate(order=order, actor=SAM)
    before = (DomainEvent.objects.count(), Task.objects.count(), order.history.count())
    with pytest.raises(TransitionRefused) as refused:
        services.order_release(order=order, actor=SAM)
    assert "does not accept split shipments" in refused.value.message
    order.refresh_from_db()
    assert order.status == Order.Status.PARTIALLY_ALLOCATED
    assert (DomainEvent.objects.count(), Task.objects.count(), order.history.count()) == before


def test_a_short_pick_quarantines_what_was_missing_opens_a_count_and_tells_the_exceptions_app(
    warehouse, customer, tape
):
    order = factories.processed_order(customer, warehouse, [("TAPE", 5)])
    (task,) = Task.objects.filter(order=order, kind=Task.Kind.PICK)
    services.task_dispatch(task=task, actor=SAM)

    services.task_complete(task=task, done_quantity=3, actor=SAM, reason="Only 3 in the bin")

    task.refresh_from_db()
    assert (task.status, task.done_quantity) == (Task.Status.SHORT, 3)
    reservation = Reservation.objects.get(pk=task.reservation_id)
    assert (reservation.status, reservation.picked_quantity) == ("picked", 3)
    level = StockLevel.objects.get(pk=reservation.stock_level_id)
    assert (level.on_hand, level.reserved, level.quarantined) == (97, 0, 2)
    assert CycleCount.objects.filter(stock_level=level, status="open").exists()
    (event,) = _events(events.TASK_SHORT, task)
    assert (event.payload["requested"], event.payload["picked"], event.payload["shortfall"]) == (5, 3, 2)
    assert event.payload["order"] == order.number
    assert not Task.objects.filter(order=order, kind=Task.Kind.PACK).exists()  # the case decides what happens next
    line = order.lines.get()
    # 3 picked, nothing reserved for the missing 2: the line no longer reads as allocated
    assert (line.picked_quantity, line.allocated_quantity, line.status) == (3, 0, OrderLine.Status.PARTIAL)
    assert stock_discrepancies() == []


def test_a_pick_task_with_no_reservation_is_refused_and_nothing_changes(warehouse, location_a, tape):
    # Given: a pick task someone set up by hand, tied to no reservation or order line
    task = Task.objects.create(kind=Task.Kind.PICK, warehouse=warehouse, location=location_a, item=tape, quantity=2)
    services.task_dispatch(task=task, actor=SAM)
    before = (DomainEvent.objects.count(), task.history.count())

    with pytest.raises(TransitionRefused) as refused:
        services.task_complete(task=task, actor=SAM)

    assert refused.value.code == "pick_without_reservation"
    task.refresh_from_db()
    assert task.status == Task.Status.DISPATCHED
    assert (DomainEvent.objects.count(), task.history.count()) == before


def test_an_order_goes_from_picking_to_closed(warehouse, customer, tape, gloves):
    order = factories.processed_order(customer, warehouse, [("TAPE", 4), ("GLOVES", 2)])
    for task in Task.objects.filter(order=order, kind=Task.Kind.PICK):
        services.task_dispatch(task=task, actor=SAM)
        services.task_complete(task=task, actor=SAM)
    pack = Task.objects.get(order=order, kind=Task.Kind.PACK)
    services.task_dispatch(task=pack, actor=SAM)
    services.task_complete(task=pack, actor=SAM)
    shipment = Shipment.objects.get(order=order)
    services.shipment_ship(shipment=shipment, carrier="DPD", tracking_number="TRK9", actor=Actor.partner("tms"))
    services.order_invoice(order=order, actor=Actor.partner("erp"))
    services.order_close(order=order, actor=SAM)

    order.refresh_from_db()
    assert order.status == Order.Status.CLOSED
    assert list(order.lines.values_list("shipped_quantity", "status")) == [(4, "shipped"), (2, "shipped")]
    statuses = [h.status for h in order.history.order_by("history_id")]
    assert statuses == [
        "received", "validated", "allocated", "released", "picking", "packed", "shipped", "invoiced", "closed",
    ]  # fmt: skip
    shipped = DomainEvent.objects.get(name=events.SHIPMENT_SHIPPED)
    assert (shipped.actor, shipped.payload["tracking_number"]) == ("partner:tms", "TRK9")
    assert StockLevel.objects.get(item=tape).on_hand == 96
    assert stock_discrepancies() == []


def test_cancelling_releases_reservations_and_cancels_open_tasks(warehouse, customer, tape):
    order = factories.processed_order(customer, warehouse, [("TAPE", 7)])
    services.order_cancel(order=order, actor=SAM, reason="Customer cancelled by phone")
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert not Reservation.objects.filter(order_number=order.number, status="reserved").exists()
    assert set(Task.objects.filter(order=order).values_list("status", flat=True)) == {Task.Status.CANCELLED}
    assert StockLevel.objects.get(item=tape).reserved == 0
    (event,) = _events(events.ORDER_CANCELLED, order)
    assert (event.payload["released"], event.reason) == (7, "Customer cancelled by phone")


def test_an_order_taken_in_one_transaction_hands_all_its_events_to_the_workers_in_one_task(
    warehouse, customer, tape, gloves, monkeypatch, django_capture_on_commit_callbacks
):
    from django.db import transaction

    from portal import events as outbox

    queued = []
    monkeypatch.setattr(outbox, "enqueue_dispatch", lambda event_ids: queued.append(list(event_ids)))

    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        order = factories.order_for(customer, warehouse, [("TAPE", 2), ("GLOVES", 1)])
        order = services.order_process(order=order, actor=SAM)

    assert order.status == Order.Status.RELEASED
    # the events some worker subscribes to (the others are done at birth), all in one task, in order
    waiting = DomainEvent.objects.filter(dispatched_at__isnull=True).order_by("pk")
    assert {"order.allocated", "task.created"} <= set(waiting.values_list("name", flat=True))
    assert queued == [list(waiting.values_list("pk", flat=True))]


@pytest.fixture
def line_cancelled_on_validation():
    """An in-transaction subscriber that cancels line 2 of every order as it is validated (through the service)."""
    from portal import events as bus

    @bus.subscribe(events.ORDER_VALIDATED, in_transaction=True, key="tests.cancel-line-2-on-validation")
    def cancel_line_two(event):
        line = OrderLine.objects.get(order_id=event.payload["order_id"], line_no=2)
        services.order_line_cancel(line=line, actor=SAM, reason="Customer dropped it")

    yield
    bus._subscribers[:] = [s for s in bus._subscribers if s.key != "tests.cancel-line-2-on-validation"]


def test_an_order_taken_in_one_go_allocates_the_lines_as_a_subscriber_left_them(
    warehouse, customer, tape, gloves, line_cancelled_on_validation
):
    order = services.order_create(
        customer=customer,
        warehouse=warehouse,
        lines=[
            services.LineInput(line_no=2, sku="GLOVES", quantity=4),
            services.LineInput(line_no=1, sku="TAPE", quantity=3),
        ],
        actor=SAM,
        ship_to=factories.SHIP_TO,
        process=True,
    )

    assert order.status == Order.Status.RELEASED
    assert list(order.lines.order_by("line_no").values_list("status", "allocated_quantity")) == [
        (OrderLine.Status.ALLOCATED, 3),
        (OrderLine.Status.CANCELLED, 0),
    ]
    assert list(Reservation.objects.filter(order_number=order.number).values_list("item__sku", "status")) == [
        ("TAPE", "reserved")
    ]
    assert list(order.tasks.values_list("item__sku", flat=True)) == ["TAPE"]
    assert stock_discrepancies() == []
