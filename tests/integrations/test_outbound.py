"""Writing partner messages: in the caller's transaction, once per source event, from the core's events;
replay (with a corrected payload, recorded), discard and bulk replay; the order timeline source."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from integrations import services
from integrations.models import OutboundAction, OutboundMessage, Partner
from integrations.outbound import message_send
from portal.actors import Actor
from portal.domain import InvalidInput, PermissionRefused, TransitionRefused
from portal.roles import Role
from tests.automation import factories

ACTOR = Actor.system("test")
Status = OutboundMessage.Status


def partner(kind: str, code: str | None = None) -> Partner:
    return Partner.objects.create(
        code=code or kind, name=kind.upper(), kind=kind, outbound_base_url=f"http://127.0.0.1:9/{kind}"
    )


@pytest.fixture
def erp(db):
    return partner("erp")


def send(**overrides):
    fields = {
        "partner_kind": "erp",
        "message_type": "order.accepted",
        "payload": {"order": "SO1"},
        "ordering_key": "order:SO1",
        "order_number": "SO1",
        "actor": ACTOR,
    }
    return message_send(**{**fields, **overrides})


def test_message_send_writes_the_row_in_the_callers_transaction(erp):
    with pytest.raises(RuntimeError), transaction.atomic():
        send()
        raise RuntimeError("the change rolls back")
    assert not OutboundMessage.objects.exists()

    message = send()

    assert message.status == Status.PENDING and message.partner == erp and message.actor == "system:test"
    assert message.claimed_until is not None  # the on-commit task owns it; the tick leaves it alone


def test_no_enabled_partner_of_the_kind_means_no_message(db):
    partner("wms").__class__.objects.update(is_enabled=False)
    assert send(partner_kind="wms") is None
    assert not OutboundMessage.objects.exists()


def test_one_message_per_partner_type_and_source_event(erp):
    first = send(source_event_id=41)
    again = send(source_event_id=41)
    assert again.pk == first.pk
    assert OutboundMessage.objects.count() == 1


def test_a_message_is_written_in_one_statement_and_returned_as_stored(erp, django_assert_num_queries):
    with django_assert_num_queries(1):
        first = send(source_event_id=7, payload={"order": "SO1", "lines": [{"sku": "A", "quantity": 2}]})
    with django_assert_num_queries(1):
        behind = send(source_event_id=8, message_type="order.allocated")  # the same order, still undelivered

    for message in (first, behind):
        stored = OutboundMessage.objects.get(pk=message.pk)
        fields = [field.attname for field in OutboundMessage._meta.concrete_fields]
        assert {name: getattr(message, name) for name in fields} == {name: getattr(stored, name) for name in fields}
    assert first.partner_id == erp.pk and first.claimed_until is not None
    assert behind.claimed_until is None  # waits behind the first: its delivery queues this one


def test_a_message_to_a_named_partner_skips_the_kind_lookup(erp):
    other = partner("erp", code="erp-2")
    message = send(partner=other)
    assert message.partner_id == other.pk
    Partner.objects.filter(pk=other.pk).update(is_enabled=False)
    assert send(partner=other, source_event_id=9).partner_id == other.pk  # named: sent, as before


def test_core_events_become_partner_messages(db):
    for kind in ("erp", "wms", "tms"):
        partner(kind)
    warehouse = factories.WarehouseFactory(code="DCO")
    customer = factories.CustomerFactory(code="outco")
    factories.stocked_item(warehouse, zone="A", sku="OUT-1")
    order = factories.released_order(customer, warehouse, [("OUT-1", 2)])

    by_partner = sorted(
        OutboundMessage.objects.filter(order_number=order.number).values_list("partner__code", "message_type")
    )

    assert ("erp", "order.accepted") in by_partner
    assert ("erp", "order.allocated") in by_partner
    assert ("wms", "order.released") in by_partner
    keys = set(OutboundMessage.objects.filter(order_number=order.number).values_list("ordering_key", flat=True))
    assert keys == {f"order:{order.number}"}
    # the stock the demo received is an ERP adjustment only when it is one; receipts are not
    assert not OutboundMessage.objects.filter(message_type="inventory.adjusted").exists()


def test_a_stock_adjustment_goes_to_the_erp_in_order_per_item(db):
    partner("erp")
    from inventory import services as inventory
    from inventory.models import StockLevel

    warehouse = factories.WarehouseFactory(code="DCA")
    item = factories.stocked_item(warehouse, zone="A", sku="ADJ-1")
    level = StockLevel.objects.get(item=item)

    inventory.stock_adjust(stock_level=level, delta=-3, actor=ACTOR, reason="Damaged in handling")

    message = OutboundMessage.objects.get(message_type="inventory.adjusted")
    assert message.ordering_key == "stock:DCA:ADJ-1"
    assert message.payload["on_hand_delta"] == -3


# --- replay and discard ---------------------------------------------------------------------


def dead(message: OutboundMessage) -> OutboundMessage:
    OutboundMessage.objects.filter(pk=message.pk).update(status=Status.DEAD, attempts=8, last_error="HTTP 422")
    message.refresh_from_db()
    return message


def test_replay_with_a_corrected_payload_keeps_the_original_and_uses_a_new_key(erp):
    message = dead(send())
    old_key = message.idempotency_key

    services.message_replay(
        message_id=message.pk, actor=ACTOR, reason="Customer code fixed", payload={"order": "SO1", "customer": "X"}
    )

    message.refresh_from_db()
    assert message.status == Status.PENDING and message.attempts == 0
    assert message.payload == {"order": "SO1", "customer": "X"}
    assert message.corrected_from == {"order": "SO1"}
    assert message.idempotency_key != old_key
    action = message.actions.get()
    assert action.kind == OutboundAction.Kind.CORRECT and action.reason == "Customer code fixed"
    assert action.previous_payload == {"order": "SO1"} and action.previous_idempotency_key == old_key
    assert action.previous_status == Status.DEAD and action.actor == "system:test"


def test_a_second_correction_keeps_the_very_first_payload(erp):
    message = dead(send())
    services.message_replay(message_id=message.pk, actor=ACTOR, reason="one", payload={"v": 1})
    dead(message)
    services.message_replay(message_id=message.pk, actor=ACTOR, reason="two", payload={"v": 2})
    message.refresh_from_db()
    assert message.corrected_from == {"order": "SO1"}
    assert [a.previous_payload for a in message.actions.all()] == [{"order": "SO1"}, {"v": 1}]


def test_plain_replay_keeps_the_key(erp):
    message = dead(send())
    key = message.idempotency_key
    services.message_replay(message_id=message.pk, actor=ACTOR, reason="Partner back")
    message.refresh_from_db()
    assert message.idempotency_key == key and message.actions.get().kind == OutboundAction.Kind.REPLAY


@pytest.mark.parametrize(
    ("status", "kwargs", "error"),
    [
        (Status.DEAD, {"reason": " "}, InvalidInput),
        (Status.DELIVERED, {"reason": "again"}, TransitionRefused),
        (Status.SENDING, {"reason": "again"}, TransitionRefused),
        (Status.DEAD, {"reason": "bad", "payload": ["not", "an", "object"]}, InvalidInput),
    ],
)
def test_refused_replays_change_nothing(erp, status, kwargs, error):
    message = send()
    OutboundMessage.objects.filter(pk=message.pk).update(status=status)
    with pytest.raises(error):
        services.message_replay(message_id=message.pk, actor=ACTOR, **kwargs)
    message.refresh_from_db()
    assert message.status == status and not message.actions.exists()


def test_only_it_support_or_operations_admin_may_replay(erp, user_with_role):
    message = dead(send())
    supervisor = Actor.for_user(user_with_role(Role.WAREHOUSE_SUPERVISOR))
    with pytest.raises(PermissionRefused):
        services.message_replay(message_id=message.pk, actor=supervisor, reason="try")
    support = Actor.for_user(user_with_role(Role.IT_SUPPORT))
    services.message_replay(message_id=message.pk, actor=support, reason="Partner fixed")


def test_bulk_replay_reports_each_message(erp):
    one, two = dead(send()), dead(send(ordering_key="order:SO2"))
    delivered = send(ordering_key="order:SO3")
    OutboundMessage.objects.filter(pk=delivered.pk).update(status=Status.DELIVERED)

    outcome = services.messages_replay_bulk(message_ids=[one.pk, two.pk, delivered.pk, 999999], actor=ACTOR, reason="x")

    assert outcome["done"] == [one.pk, two.pk]
    assert set(outcome["refused"]) == {delivered.pk, 999999}
    assert "delivered" in outcome["refused"][delivered.pk]


def test_discard_needs_a_reason_and_is_recorded(erp):
    message = dead(send())
    with pytest.raises(InvalidInput):
        services.message_discard(message_id=message.pk, actor=ACTOR, reason="")
    services.message_discard(message_id=message.pk, actor=ACTOR, reason="Booked by hand in the ERP")
    message.refresh_from_db()
    assert message.status == Status.DISCARDED
    assert message.actions.get().kind == OutboundAction.Kind.DISCARD


# --- timeline ---------------------------------------------------------------------------------


def test_the_order_timeline_shows_its_messages(erp, django_assert_max_num_queries):
    from integrations.selectors import timeline_entries
    from portal.timeline import _sources

    for _ in range(5):
        send(payload={"x": str(uuid.uuid4())})

    class Order:
        number = "SO1"

    with django_assert_max_num_queries(3):
        entries = timeline_entries(Order())

    assert len(entries) == 5
    assert entries[0].title == "order.accepted to erp: pending"
    assert entries[0].url.startswith("/integrations/messages/")
    assert _sources["integrations"] is timeline_entries


def test_the_order_to_ship_flow_tells_each_partner_in_order(db):
    """Accepted and allocated → ERP, released → WMS, packed → TMS, shipped → ERP; one key per order."""
    from orchestration import services as orchestration

    for kind in ("erp", "wms", "tms"):
        partner(kind)
    warehouse = factories.WarehouseFactory(code="DCF")
    customer = factories.CustomerFactory(code="flowco")
    factories.stocked_item(warehouse, zone="A", sku="FLOW-1")
    order = factories.released_order(customer, warehouse, [("FLOW-1", 2)])
    for task in factories.pick_tasks(order):
        orchestration.task_start(task=task, actor=ACTOR)
        orchestration.task_complete(task=task, done_quantity=task.quantity, actor=ACTOR, reason="Picked")
    shipment = orchestration.shipment_pack(order=order, actor=ACTOR)
    orchestration.shipment_ship(shipment=shipment, carrier="DHL", tracking_number="TRK1", actor=ACTOR)

    sent = list(
        OutboundMessage.objects.filter(order_number=order.number)
        .order_by("id")
        .values_list("partner__code", "message_type")
    )
    assert sent == [
        ("erp", "order.accepted"),
        ("erp", "order.allocated"),
        ("wms", "order.released"),
        ("tms", "shipment.ready"),
        ("erp", "shipment.confirmed"),
    ]
    confirmation = OutboundMessage.objects.get(order_number=order.number, message_type="shipment.confirmed")
    assert confirmation.payload["tracking_number"] == "TRK1" and confirmation.payload["lines"][0]["quantity"] == 2


def test_a_released_order_cancelled_tells_the_wms_and_an_unreleased_one_does_not(db):
    from orchestration import services as orchestration

    for kind in ("erp", "wms"):
        partner(kind)
    warehouse = factories.WarehouseFactory(code="DCC")
    customer = factories.CustomerFactory(code="cancelco")
    factories.stocked_item(warehouse, zone="A", sku="CAN-1")
    released = factories.released_order(customer, warehouse, [("CAN-1", 1)])
    received = factories.order_for(customer, warehouse, [("CAN-1", 1)])

    orchestration.order_cancel(order=released, actor=ACTOR, reason="Customer called")
    orchestration.order_cancel(order=received, actor=ACTOR, reason="Customer called")

    cancels = OutboundMessage.objects.filter(message_type="order.cancelled")
    assert list(cancels.values_list("partner__code", "order_number")) == [("wms", released.number)]


def test_a_rejected_order_tells_the_erp(db):
    from orchestration import services as orchestration

    partner("erp")
    warehouse = factories.WarehouseFactory(code="DCX")
    customer = factories.CustomerFactory(code="rejectco")
    item = factories.stocked_item(warehouse, zone="A", sku="OLD-1")
    order = factories.order_for(customer, warehouse, [("OLD-1", 1)])
    item.is_active = False
    item.save()

    orchestration.order_validate(order=order, actor=ACTOR)

    message = OutboundMessage.objects.get(message_type="order.rejected")
    assert message.order_number == order.number and "no longer sold" in message.payload["reasons"][0]
