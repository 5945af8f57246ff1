"""Stock arrivals settled in batches: many subjects' runs in one transaction, each subject still in order."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from exceptions.models import Case
from integrations import inbound
from integrations.models import InboundEvent
from inventory import services as inventory
from inventory.models import Item, Location, Lot, Receipt, StockLevel, StockMovement
from portal.models import DomainEvent
from tests.integrations.api_support import *  # noqa: F403
from tests.integrations.api_support import make_partner
from tests.integrations.test_inbound_events import another_worker_holding

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_worker(monkeypatch):
    """Events are stored without a task: each test is the worker."""
    monkeypatch.setattr(inbound, "enqueue_subject", lambda subject_key: None)


def arrive(partner, event_id: str, *, sku: str = "API-A", location: str = "P-02", quantity: int = 1, **extra):
    inbound.event_accept(
        partner=partner,
        event_id=event_id,
        event_type="stock.received",
        occurred_at=timezone.now(),
        payload={"sku": sku, "warehouse": "DCA", "location": location, "quantity": quantity, **extra},
    )
    return f"stock:DCA:{sku}"


def on_hand(sku: str, location: str = "P-02") -> int:
    level = StockLevel.objects.filter(item__sku=sku, location__code=location, lot__isnull=True).first()
    return level.on_hand if level else 0


def statuses() -> dict[str, str]:
    return dict(InboundEvent.objects.values_list("event_id", "status"))


def received_refs() -> list[str]:
    movements = StockMovement.objects.filter(source_type="event").order_by("pk")
    return list(movements.values_list("source_ref", flat=True))


def test_arrivals_of_many_subjects_are_settled_together_in_arrival_order(network, wms):
    items = [Item.objects.create(sku=f"RUN-{n}", description=f"Run item {n}") for n in range(4)]
    subjects = []
    for round_no in range(3):
        for item in items:
            subjects.append(arrive(wms[0], f"ev-{item.sku}-{round_no}", sku=item.sku, quantity=round_no + 1))

    assert inbound.events_process_subjects(subject_keys=subjects) == 12

    assert set(statuses().values()) == {"processed"}
    assert {item.sku: on_hand(item.sku) for item in items} == {item.sku: 6 for item in items}
    for item in items:
        refs = [ref for ref in received_refs() if ref.startswith(f"ev-{item.sku}-")]
        assert refs == [f"ev-{item.sku}-{n}" for n in range(3)]
    movement = StockMovement.objects.get(source_ref="ev-RUN-0-2")
    assert (movement.kind, movement.on_hand_delta, movement.actor, movement.reason) == (
        "receipt",
        3,
        "partner:wms-a",
        "Received (wms-a)",
    )
    published = DomainEvent.objects.filter(name="inventory.stock_received", payload__sku="RUN-0")
    assert sorted(published.values_list("payload__quantity", flat=True)) == [1, 2, 3]
    assert set(published.values_list("actor", "reason")) == {("partner:wms-a", "Received (wms-a)")}
    assert InboundEvent.objects.filter(attempts=1, processed_at__isnull=False).count() == 12


def _queries_to_settle(partner, count: int, tag: str) -> int:
    subjects = [arrive(partner, f"ev-{tag}-{n}", sku=f"API-{'ABC'[n % 3]}", quantity=1) for n in range(count)]
    with CaptureQueriesContext(connection) as captured:
        assert inbound.events_process_subjects(subject_keys=subjects) == count
    return len(captured)


def test_the_queries_to_settle_arrivals_do_not_grow_with_their_number(network, wms):
    _queries_to_settle(wms[0], 3, "first")  # every stock row exists from here on

    few, more, many = (_queries_to_settle(wms[0], count, f"n{count}") for count in (3, 15, 60))

    assert few == more == many <= 15, (few, more, many)  # savepoints included


def test_a_refused_arrival_fails_alone_with_its_reason_and_a_case(network, wms):
    lot_item = Item.objects.create(sku="LOT-1", description="Lot item", lot_tracked=True)
    Lot.objects.create(item=lot_item, code="L-7")
    arrive(wms[0], "ev-good", quantity=2)
    arrive(wms[0], "ev-sku", sku="NOPE")
    arrive(wms[0], "ev-location", sku="API-B", location="Z-99")
    arrive(wms[0], "ev-no-lot", sku="LOT-1")
    arrive(wms[0], "ev-lot", sku="LOT-1", lot="L-7", quantity=4)
    arrive(wms[0], "ev-unknown-lot", sku="LOT-1", lot="L-8")
    subjects = list(InboundEvent.objects.values_list("subject_key", flat=True))

    assert inbound.events_process_subjects(subject_keys=subjects) == 6

    assert statuses() == {
        "ev-good": "processed",
        "ev-sku": "failed",
        "ev-location": "failed",
        "ev-no-lot": "failed",
        "ev-lot": "processed",
        "ev-unknown-lot": "failed",
    }
    errors = dict(InboundEvent.objects.filter(status="failed").values_list("event_id", "last_error"))
    assert errors == {
        "ev-sku": "Unknown SKU 'NOPE'. payload.sku: Unknown.",
        "ev-location": "No location 'Z-99' in warehouse 'DCA'. payload.location: Unknown.",
        "ev-no-lot": "LOT-1 is lot-tracked: give the lot. lot: Required for this item.",
        "ev-unknown-lot": "No lot 'L-8' of LOT-1. payload.lot: Unknown.",
    }
    assert on_hand("API-A") == 2
    assert StockLevel.objects.get(item=lot_item, lot__code="L-7").on_hand == 4
    cases = Case.objects.filter(type__code="integration_failure")
    assert sorted(case.context["event_id"] for case in cases) == [
        "ev-location",
        "ev-no-lot",
        "ev-sku",
        "ev-unknown-lot",
    ]


def test_a_subjects_run_stops_at_an_event_that_is_not_a_plain_arrival(network, wms):
    """A receipt-line arrival between plain ones is settled alone, after the one before it and before the next."""
    item = Item.objects.get(sku="API-A")
    location = Location.objects.get(code="P-02")
    receipt = inventory.receipt_create(
        number="ASN-RUN",
        warehouse=location.warehouse,
        supplier="Supplier",
        lines=[{"item": item, "expected_quantity": 5}],
        actor=inbound.PROCESSOR,
        reason="Expected",
    )
    subject = arrive(wms[0], "ev-1", quantity=1)
    arrive(wms[0], "ev-2", quantity=5, receipt=receipt.number, receipt_line=1)
    arrive(wms[0], "ev-3", quantity=3)

    assert inbound.events_process_subjects(subject_keys=[subject]) == 3

    assert set(statuses().values()) == {"processed"}
    receipts = StockMovement.objects.filter(stock_level__item=item, stock_level__location=location, kind="receipt")
    assert list(receipts.order_by("pk").values_list("on_hand_delta", flat=True)) == [1, 5, 3]
    assert Receipt.objects.get(number="ASN-RUN").lines.get().received_quantity == 5


def test_runs_are_per_partner_so_each_arrival_keeps_its_own_actor(network, wms):
    other = make_partner("wms-b", wms[0].kind, wms[0].scopes)[0]
    subject = arrive(wms[0], "ev-a1")
    arrive(other, "ev-b1")
    arrive(wms[0], "ev-a2")

    assert inbound.events_process_subjects(subject_keys=[subject]) == 3

    movements = StockMovement.objects.filter(source_type="event").order_by("pk")
    assert list(movements.values_list("source_ref", "actor")) == [
        ("ev-a1", "partner:wms-a"),
        ("ev-b1", "partner:wms-b"),
        ("ev-a2", "partner:wms-a"),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_subject_whose_head_another_worker_holds_is_left_to_it(network, wms):
    held = arrive(wms[0], "ev-head")
    arrive(wms[0], "ev-next")
    free = arrive(wms[0], "ev-free", sku="API-B")
    with another_worker_holding(InboundEvent.objects.get(event_id="ev-head")):
        assert inbound.events_process_subjects(subject_keys=[held, free]) == 1
    assert statuses() == {"ev-head": "pending", "ev-next": "pending", "ev-free": "processed"}
    assert inbound.events_process_subjects(subject_keys=[held]) == 2
    assert received_refs() == ["ev-free", "ev-head", "ev-next"]


@pytest.mark.django_db(transaction=True)
def test_a_round_leaves_the_later_events_of_a_subject_it_does_not_hold_unlocked(network, wms):
    """The worker holding a subject's head can take the rest of it at once: nobody else sat on its later events."""
    held = arrive(wms[0], "ev-head")
    arrive(wms[0], "ev-next")
    free = arrive(wms[0], "ev-free", sku="API-B")
    head, later = (InboundEvent.objects.get(event_id=name).pk for name in ("ev-head", "ev-next"))
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=settings["NAME"]
    ) as other_worker:
        other_worker.execute("SELECT id FROM integrations_inboundevent WHERE id = %s FOR UPDATE", [head])

        with transaction.atomic():  # this worker's round, still open
            claimed = inbound._claim_runs([held, free], timezone.now())
            assert list(claimed) == [free]
            # the other worker, done with the head, goes on to the next event of its subject without waiting
            assert other_worker.execute(
                "SELECT id FROM integrations_inboundevent WHERE id = %s FOR UPDATE NOWAIT", [later]
            ).fetchone() == (later,)
        other_worker.rollback()


def test_a_head_waiting_for_its_retry_holds_its_subject_back(network, wms):
    subject = arrive(wms[0], "ev-head")
    arrive(wms[0], "ev-next")
    later = timezone.now() + dt.timedelta(minutes=1)
    InboundEvent.objects.filter(event_id="ev-head").update(attempts=1, next_attempt_at=later)

    assert inbound.events_process_subjects(subject_keys=[subject]) == 0
    assert set(statuses().values()) == {"pending"}

    assert inbound.events_process_subjects(subject_keys=[subject], now=later) == 2
    assert received_refs() == ["ev-head", "ev-next"]


def test_a_broken_batch_handler_falls_back_to_one_event_at_a_time(network, wms, monkeypatch):
    registered = inbound.handler_for("stock.received")

    def broken(events):
        raise RuntimeError("batch bug")

    monkeypatch.setitem(
        inbound._handlers, "stock.received", inbound.EventHandler(**{**registered.__dict__, "batch_handler": broken})
    )
    subjects = [arrive(wms[0], "ev-1"), arrive(wms[0], "ev-2", sku="API-B"), arrive(wms[0], "ev-3")]

    assert inbound.events_process_subjects(subject_keys=subjects) == 3

    assert set(statuses().values()) == {"processed"}
    assert [ref for ref in received_refs() if ref != "ev-2"] == ["ev-1", "ev-3"]
    assert on_hand("API-A") == 2 and on_hand("API-B") == 1


@pytest.mark.django_db(transaction=True)
def test_an_arrival_stored_while_a_run_is_settled_is_not_left_behind(network, wms, monkeypatch):
    """Its own task found the head held and went away; the worker that held it looks again after commit."""
    subject = arrive(wms[0], "ev-head")
    receive_many = inventory.stock_receive_many

    def another_request():
        try:
            arrive(wms[0], "ev-late", quantity=2)
        finally:
            connection.close()  # this thread's own connection

    def receive_while_another_arrives(**kwargs):
        if kwargs["arrivals"][0].source_ref == "ev-head":
            arrival = threading.Thread(target=another_request)
            arrival.start()
            arrival.join()
        return receive_many(**kwargs)

    monkeypatch.setattr(inventory, "stock_receive_many", receive_while_another_arrives)

    assert inbound.events_process_subjects(subject_keys=[subject]) == 2

    assert statuses() == {"ev-head": "processed", "ev-late": "processed"}
    assert received_refs() == ["ev-head", "ev-late"]
