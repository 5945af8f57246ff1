"""Hand-offs with the warehouse: the ERP announces a delivery, the WMS unloads and closes it; counts asked for go out."""

from __future__ import annotations

import pytest
from django.utils import timezone

from exceptions.models import Case
from integrations.models import InboundEvent, OutboundMessage, Partner
from inventory.models import Receipt, StockLevel
from tests.integrations.api_support import *  # noqa: F403
from tests.integrations.api_support import event


@pytest.fixture
def wms_receiver(db):
    """The WMS, with events scope and an outbound address, so it is told of deliveries to expect."""
    return make_partner(  # noqa: F405
        "wms-a", Partner.Kind.WMS, [Partner.Scope.EVENTS_WRITE.value], outbound_base_url="http://127.0.0.1:9/wms"
    )


def asn(number: str = "ASN-77", **fields) -> dict:
    return {
        "receipt": number,
        "warehouse": "DCA",
        "supplier": "Nordic Supply",
        "purchase_order": "PO-4411",
        "lines": [{"sku": "API-A", "expected_quantity": 40}, {"sku": "API-B", "expected_quantity": 10}],
        **fields,
    }


@pytest.mark.django_db
def test_a_delivery_announced_by_the_erp_is_received_and_closed_by_the_wms(network, erp, wms_receiver, post_as):
    before = StockLevel.objects.get(item__sku="API-A", location__code="P-01").on_hand

    response = post_as(erp[1], event("receipt.expected", asn(), event_id="asn-77"))

    assert response.status_code == 202, response.content
    receipt = Receipt.objects.get(number="ASN-77")
    assert (receipt.status, receipt.supplier, receipt.purchase_order) == ("expected", "Nordic Supply", "PO-4411")
    assert list(receipt.lines.order_by("line_no").values_list("item__sku", "expected_quantity")) == [
        ("API-A", 40),
        ("API-B", 10),
    ]
    told = OutboundMessage.objects.get(partner=wms_receiver[0], message_type="receipt.expected")
    assert told.ordering_key == "receipt:ASN-77"
    assert [line["sku"] for line in told.payload["lines"]] == ["API-A", "API-B"]
    assert receipt.history.latest("history_id").history_actor == "partner:erp-a"

    arrival = {"warehouse": "DCA", "location": "P-01", "receipt": "ASN-77"}
    post_as(wms_receiver[1], event("stock.received", {**arrival, "sku": "API-A", "quantity": 40, "receipt_line": 1}))
    post_as(wms_receiver[1], event("stock.received", {**arrival, "sku": "API-B", "quantity": 10, "receipt_line": 2}))
    post_as(wms_receiver[1], event("receipt.closed", {"receipt": "ASN-77", "note": "Door 3 done"}))

    receipt.refresh_from_db()
    assert receipt.status == "closed"
    assert StockLevel.objects.get(item__sku="API-A", location__code="P-01").on_hand == before + 40
    subjects = set(InboundEvent.objects.values_list("subject_key", flat=True))
    assert subjects == {"receipt:ASN-77", "stock:DCA:API-A", "stock:DCA:API-B"}  # arrivals stay in their item's order
    assert not Case.objects.exists()


@pytest.mark.django_db
def test_a_delivery_closed_short_raises_a_receiving_variance_for_procurement(network, erp, wms_receiver, post_as):
    post_as(erp[1], event("receipt.expected", asn("ASN-SHORT")))
    arrival = {"warehouse": "DCA", "location": "P-01", "receipt": "ASN-SHORT"}
    post_as(wms_receiver[1], event("stock.received", {**arrival, "sku": "API-A", "quantity": 25, "receipt_line": 1}))

    post_as(wms_receiver[1], event("receipt.closed", {"receipt": "ASN-SHORT"}))

    case = Case.objects.get(type__code="receiving_variance")
    assert case.queue.role == "procurement" and "ASN-SHORT" in case.summary
    assert Receipt.objects.get(number="ASN-SHORT").status == "closed"


@pytest.mark.django_db
def test_an_announcement_sent_again_under_a_new_id_changes_nothing(network, erp, wms_receiver, post_as):
    post_as(erp[1], event("receipt.expected", asn("ASN-TWICE"), event_id="asn-a"))
    post_as(erp[1], event("receipt.expected", asn("ASN-TWICE", supplier="Someone else"), event_id="asn-b"))

    assert dict(InboundEvent.objects.values_list("event_id", "status")) == {"asn-a": "processed", "asn-b": "ignored"}
    assert Receipt.objects.get(number="ASN-TWICE").supplier == "Nordic Supply"
    assert OutboundMessage.objects.filter(message_type="receipt.expected").count() == 1


@pytest.mark.django_db
def test_a_delivery_naming_an_unknown_sku_records_nothing_and_raises_a_case(network, erp, wms_receiver, post_as):
    lines = [{"sku": "API-A", "expected_quantity": 5}, {"sku": "NOPE-1", "expected_quantity": 5}]

    post_as(erp[1], event("receipt.expected", asn("ASN-BAD", lines=lines), event_id="asn-bad"))

    stored = InboundEvent.objects.get(event_id="asn-bad")
    assert stored.status == "failed" and "payload.lines.1.sku" in stored.last_error
    assert not Receipt.objects.filter(number="ASN-BAD").exists()
    assert not OutboundMessage.objects.filter(message_type="receipt.expected").exists()
    assert Case.objects.filter(type__code="integration_failure", subject_id=str(stored.pk)).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload, field",
    [
        (asn(lines=[]), "payload.lines"),
        (asn(lines=[{"sku": "API-A", "expected_quantity": 0}]), "payload.lines.0.expected_quantity"),
        (asn(kind="invoice"), "payload.kind"),
        (
            {"receipt": "ASN-X", "warehouse": "DCA", "lines": [{"sku": "API-A", "expected_quantity": 1}]},
            "payload.supplier",
        ),
    ],
)
def test_a_malformed_announcement_is_refused_at_the_door(network, erp, post_as, payload, field):
    response = post_as(erp[1], event("receipt.expected", payload))

    assert response.status_code == 422, response.content
    assert field in response.json()["error"]["fields"]
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
def test_deliveries_are_announced_by_the_erp_and_closed_by_the_wms_alone(network, erp, wms_receiver, post_as):
    refused_asn = post_as(wms_receiver[1], event("receipt.expected", asn()))
    refused_close = post_as(erp[1], event("receipt.closed", {"receipt": "ASN-77"}))

    assert (refused_asn.status_code, refused_close.status_code) == (422, 422)
    assert {refused_asn.json()["error"]["code"], refused_close.json()["error"]["code"]} == {"event_type_not_allowed"}
    assert not InboundEvent.objects.exists() and not Receipt.objects.exists()


@pytest.mark.django_db
def test_closing_a_receipt_twice_is_acknowledged_and_ignored(network, erp, wms_receiver, post_as):
    post_as(erp[1], event("receipt.expected", asn("ASN-DONE", lines=[{"sku": "API-A", "expected_quantity": 1}])))
    arrival = {"sku": "API-A", "warehouse": "DCA", "location": "P-01", "quantity": 1, "receipt": "ASN-DONE"}
    post_as(wms_receiver[1], event("stock.received", {**arrival, "receipt_line": 1}))
    post_as(wms_receiver[1], event("receipt.closed", {"receipt": "ASN-DONE"}, event_id="close-1"))
    post_as(wms_receiver[1], event("receipt.closed", {"receipt": "ASN-DONE"}, event_id="close-2"))

    statuses = dict(InboundEvent.objects.filter(type="receipt.closed").values_list("event_id", "status"))
    assert statuses == {"close-1": "processed", "close-2": "ignored"}


@pytest.mark.django_db
def test_a_close_that_overtakes_an_arrival_waits_for_it(network, erp, wms_receiver, api_client, post_as):
    import datetime as dt

    from integrations import inbound

    post_as(erp[1], event("receipt.expected", asn("ASN-RACE", lines=[{"sku": "API-A", "expected_quantity": 8}])))
    arrival = {"sku": "API-A", "warehouse": "DCA", "location": "P-01", "quantity": 8, "receipt": "ASN-RACE"}
    api_client(wms_receiver[1]).event(event("stock.received", {**arrival, "receipt_line": 1}, event_id="arr"))
    # The arrival sits in its item's queue (no worker has run it) when the close is processed in the receipt's.
    post_as(wms_receiver[1], event("receipt.closed", {"receipt": "ASN-RACE"}, event_id="close"))

    close = InboundEvent.objects.get(event_id="close")
    assert (close.status, close.attempts) == ("pending", 1) and "1 arrival" in close.last_error
    assert close.next_attempt_at is not None
    assert Receipt.objects.get(number="ASN-RACE").status == "expected"

    inbound.events_process_subjects(subject_keys=[InboundEvent.objects.get(event_id="arr").subject_key])
    inbound.events_process_due(now=timezone.now() + dt.timedelta(minutes=1), older_than_seconds=0)

    close.refresh_from_db()
    assert (close.status, close.attempts) == ("processed", 2)
    receipt = Receipt.objects.get(number="ASN-RACE")
    assert receipt.status == "closed" and receipt.lines.get().received_quantity == 8
    assert not Case.objects.exists()  # no variance, no integration failure


@pytest.mark.django_db
def test_a_close_still_waiting_after_every_try_fails_into_a_case(network, erp, wms_receiver, api_client, post_as):
    import datetime as dt

    from integrations import inbound

    post_as(erp[1], event("receipt.expected", asn("ASN-STUCK", lines=[{"sku": "API-A", "expected_quantity": 8}])))
    arrival = {"sku": "API-A", "warehouse": "DCA", "location": "P-01", "quantity": 8, "receipt": "ASN-STUCK"}
    api_client(wms_receiver[1]).event(event("stock.received", {**arrival, "receipt_line": 1}))  # never processed
    post_as(wms_receiver[1], event("receipt.closed", {"receipt": "ASN-STUCK"}, event_id="close"))
    close = InboundEvent.objects.get(event_id="close")

    for minutes in range(1, inbound.MAX_ATTEMPTS + 1):
        inbound.event_process_next(subject_key=close.subject_key, now=timezone.now() + dt.timedelta(minutes=minutes))

    close.refresh_from_db()
    assert (close.status, close.attempts) == ("failed", inbound.MAX_ATTEMPTS)
    assert Case.objects.filter(type__code="integration_failure", subject_id=str(close.pk)).exists()
    assert Receipt.objects.get(number="ASN-STUCK").status == "expected"


@pytest.mark.django_db
def test_a_count_asked_for_in_the_portal_is_sent_to_the_wms_and_its_answer_applied(
    network, wms_receiver, post_as, user_with_role
):
    from inventory import services as inventory
    from inventory.models import CycleCount
    from portal.actors import Actor
    from portal.roles import Role

    level = StockLevel.objects.get(item__sku="API-C", location__code="P-01")
    supervisor = Actor.for_user(user_with_role(Role.WAREHOUSE_SUPERVISOR))

    count = inventory.count_request(stock_level=level, actor=supervisor, reason="Bin looks light")

    told = OutboundMessage.objects.get(partner=wms_receiver[0], message_type="count.requested")
    assert (told.ordering_key, told.payload["count_id"]) == (f"count:{count.pk}", count.pk)
    assert {told.payload[k] for k in ("sku", "warehouse", "location")} == {"API-C", "DCA", "P-01"}
    post_as(wms_receiver[1], event("count.recorded", {"count_id": count.pk, "counted_quantity": level.on_hand}))
    assert CycleCount.objects.get(pk=count.pk).status == CycleCount.Status.APPROVED


@pytest.mark.django_db
def test_a_count_the_wms_reported_unasked_is_not_sent_back_to_it(network, wms_receiver, post_as):
    body = {"sku": "API-C", "warehouse": "DCA", "location": "P-01", "counted_quantity": 100}

    post_as(wms_receiver[1], event("count.recorded", body))

    assert InboundEvent.objects.get(type="count.recorded").status == "processed"
    assert not OutboundMessage.objects.filter(message_type="count.requested").exists()


@pytest.mark.django_db
def test_a_delivery_names_the_suppliers_lots_the_portal_knows(network, erp, wms_receiver, post_as):
    from inventory.models import Item, Lot

    lot = Lot.objects.create(item=Item.objects.get(sku="API-A"), code="L-2026-11")
    lines = [{"sku": "API-A", "expected_quantity": 5, "lot": "L-2026-11"}, {"sku": "API-B", "expected_quantity": 5}]

    post_as(erp[1], event("receipt.expected", asn("ASN-LOT", lines=lines)))
    post_as(erp[1], event("receipt.expected", asn("ASN-NOLOT", lines=[{**lines[0], "lot": "L-NONE"}]), event_id="bad"))

    receipt = Receipt.objects.get(number="ASN-LOT")
    assert list(receipt.lines.order_by("line_no").values_list("lot_id", flat=True)) == [lot.pk, None]
    assert not Receipt.objects.filter(number="ASN-NOLOT").exists()
    assert "L-NONE" in InboundEvent.objects.get(event_id="bad").last_error
