"""POST /api/v1/events: signatures, duplicates, validation; processing in order per subject, failures and retries."""

from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from exceptions.models import Case
from integrations import inbound
from integrations.models import InboundEvent, InboundRequest
from inventory.models import CycleCount, Item, Location, StockLevel, StockMovement
from orchestration.models import Order, Shipment, Task
from tests.integrations.api_support import *  # noqa: F403
from tests.integrations.api_support import event


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    return body["error"]


@pytest.fixture
def released(network, erp, api_client):
    """A released order of three lines: (order, its pick tasks)."""
    number = api_client(erp[1]).post("/api/v1/orders", order_body("PO-EV")).json()["number"]  # noqa: F405
    order = Order.objects.get(number=number)
    assert order.status == Order.Status.RELEASED
    return order, list(Task.objects.filter(order=order, kind=Task.Kind.PICK).order_by("pk"))


@pytest.fixture
def post(wms, api_client, django_capture_on_commit_callbacks):
    """Post a signed event as the WMS and run what its commit schedules (the eager worker)."""
    client = api_client(wms[1])

    def send(body, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return client.event(body, **kwargs)

    return send


# --- signatures ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_signed_event_is_accepted_stored_and_processed(released, post):
    order, tasks = released

    response = post(event("task.started", {"task_id": tasks[0].pk}, event_id="ev-1"))

    assert response.status_code == 202, response.content
    assert response.json() == {"status": "accepted", "event_id": "ev-1", "event_status": "pending"}
    stored = InboundEvent.objects.get(event_id="ev-1")
    assert (stored.status, stored.subject_key, stored.order_number) == (
        "processed",
        f"order:{order.number}",
        order.number,
    )
    assert stored.partner.code == "wms-a" and stored.attempts == 1
    tasks[0].refresh_from_db()
    assert tasks[0].status == Task.Status.IN_PROGRESS
    assert tasks[0].history.first().history_actor == "partner:wms-a"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_X_SIGNATURE": "sha256=" + "0" * 64},
        {"HTTP_X_SIGNATURE": "md5=abc"},
        {"HTTP_X_SIGNATURE": "garbage"},
        {"HTTP_X_SIGNATURE": ""},
    ],
)
def test_a_bad_signature_is_401_and_stores_nothing(released, wms, api_client, headers):
    body = json.dumps(event("task.started", {"task_id": released[1][0].pk})).encode()
    stamp = str(int(time.time()))
    response = api_client(wms[1]).post("/api/v1/events", raw=body, HTTP_X_TIMESTAMP=stamp, **headers)
    assert_error(response, 401, "bad_signature")
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
def test_a_signature_with_another_secret_or_a_changed_body_is_refused(released, wms, api_client):
    client = api_client(wms[1])
    body = json.dumps(event("task.started", {"task_id": released[1][0].pk})).encode()
    assert_error(client.event(body, secret="not-the-secret"), 401, "bad_signature")
    stamp = str(int(time.time()))
    tampered = body.replace(b"task.started", b"task.complete")
    response = client.post("/api/v1/events", raw=tampered, HTTP_X_TIMESTAMP=stamp, HTTP_X_SIGNATURE=sign(body, stamp))  # noqa: F405
    assert_error(response, 401, "bad_signature")
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
def test_missing_signature_headers_are_refused(released, wms, api_client):
    body = json.dumps(event("task.started", {"task_id": released[1][0].pk})).encode()
    assert_error(api_client(wms[1]).post("/api/v1/events", raw=body), 401, "bad_signature")


@pytest.mark.django_db
# Ahead by 330 s, not 301: the check runs a moment after the stamp is taken, and on a loaded machine more than a
# second can pass, which would bring a +301 stamp back within the 300 s tolerance.
@pytest.mark.parametrize("skew", [-301, 330, -(10**9)])
def test_a_stale_timestamp_is_refused_either_way(released, wms, api_client, skew):
    body = event("task.started", {"task_id": released[1][0].pk})
    response = api_client(wms[1]).event(body, timestamp=int(time.time()) + skew)
    assert_error(response, 401, "stale_timestamp")
    assert not InboundEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("stamp", ["abc", "1.5", "-5", "1" * 20, "٣٣"])
def test_a_malformed_timestamp_is_refused(released, wms, api_client, stamp):
    body = json.dumps(event("task.started", {"task_id": released[1][0].pk})).encode()
    response = api_client(wms[1]).post(
        "/api/v1/events",
        raw=body,
        HTTP_X_TIMESTAMP=stamp,
        HTTP_X_SIGNATURE=sign(body, stamp),  # noqa: F405
    )
    assert_error(response, 401, "stale_timestamp")


@pytest.mark.django_db
def test_a_timestamp_within_five_minutes_is_fine(released, post):
    response = post(event("task.started", {"task_id": released[1][0].pk}), timestamp=int(time.time()) - 290)
    assert response.status_code == 202


@pytest.mark.django_db
def test_a_partner_without_a_secret_cannot_post_events(released, wms, api_client):
    wms[0].webhook_secret = ""
    wms[0].save()
    response = api_client(wms[1]).event(event("task.started", {"task_id": released[1][0].pk}))
    assert_error(response, 401, "bad_signature")


@pytest.mark.django_db
def test_an_erp_token_without_events_scope_is_403(released, api_client):
    from integrations.models import Partner

    partner, token = make_partner("erp-noevents", Partner.Kind.ERP, ["orders:write"])  # noqa: F405
    assert_error(api_client(token).event(event("task.started", {"task_id": 1})), 403, "forbidden")


# --- duplicates and validation -------------------------------------------------------------


@pytest.mark.django_db
def test_a_replayed_event_id_is_acknowledged_and_ignored(released, post):
    order, tasks = released
    body = event("stock.received", {"sku": "API-A", "warehouse": "DCA", "location": "P-02", "quantity": 5})
    assert post(body).status_code == 202

    again = post(body)
    changed = post({**body, "payload": {**body["payload"], "quantity": 500}})

    assert again.status_code == changed.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": body["event_id"], "event_status": "processed"}
    stored = InboundEvent.objects.get(event_id=body["event_id"])
    assert stored.duplicates == 2
    assert StockLevel.objects.get(item__sku="API-A", location__code="P-02").on_hand == 5


@pytest.mark.django_db
def test_two_partners_may_use_the_same_event_id(released, post, api_client, django_capture_on_commit_callbacks):
    from integrations.models import Partner

    _, token = make_partner("wms-b", Partner.Kind.WMS, ["events:write"])  # noqa: F405
    body = event("stock.received", {"sku": "API-A", "warehouse": "DCA", "location": "P-02", "quantity": 1})
    assert post(body).status_code == 202
    with django_capture_on_commit_callbacks(execute=True):
        assert api_client(token).event(body).status_code == 202
    assert StockLevel.objects.get(item__sku="API-A", location__code="P-02").on_hand == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, fields",
    [
        (event("task.teleported", {"task_id": 1}), {"type"}),
        (event("task.started", {}), {"payload.task_id"}),
        (event("task.started", {"task_id": "one"}), {"payload.task_id"}),
        (event("task.started", {"task_id": 10**40}), {"payload.task_id"}),
        (event("task.short", {"task_id": 1}), {"payload.done_quantity"}),
        (event("stock.received", {"sku": "API-A", "warehouse": "DCA", "location": "P-01", "quantity": 0}), None),
        (event("count.recorded", {"counted_quantity": 3}), {"payload"}),
        (event("shipment.shipped", {"order": "SO1"}), {"payload.carrier", "payload.tracking_number"}),
        ({"event_id": "x", "type": "task.started", "payload": {}}, {"occurred_at"}),
        ({**event("task.started", {"task_id": 1}), "payload": [1, 2]}, {"payload"}),
        ({**event("task.started", {"task_id": 1}), "occurred_at": "yesterday"}, {"occurred_at"}),
        ({**event("task.started", {"task_id": 1}), "event_id": "x" * 101}, {"event_id"}),
    ],
)
def test_invalid_events_are_422_and_not_stored(released, post, body, fields):
    response = post(body)
    error = assert_error(response, 422, response.json()["error"]["code"])
    assert error["code"] in ("invalid", "unknown_event_type")
    if fields is not None:
        assert set(error["fields"]) == fields, error
    assert not InboundEvent.objects.exists()
    assert InboundRequest.objects.filter(path="/api/v1/events", status_code=422).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"payload": {"a": "\\u0000"}}', b"\xc3\x28", b"[" * 100 + b"]" * 100])
def test_malformed_event_bodies_are_refused(released, wms, api_client, raw):
    response = api_client(wms[1]).event(raw)
    assert response.status_code in (400, 422), response.content
    assert not InboundEvent.objects.exists()


# --- handlers --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_pick_pack_and_ship_through_events(released, post):
    order, tasks = released
    for task in tasks:
        assert post(event("task.completed", {"task_id": task.pk})).status_code == 202
    order.refresh_from_db()
    assert order.status == Order.Status.PICKING
    assert post(event("shipment.packed", {"order": order.number, "packages": 2})).status_code == 202
    post(event("shipment.shipped", {"order": order.number, "carrier": "DHL", "tracking_number": "TRK1"}))

    order.refresh_from_db()
    shipment = Shipment.objects.get(order=order)
    assert (order.status, shipment.status, shipment.tracking_number, shipment.packages) == (
        Order.Status.SHIPPED,
        Shipment.Status.SHIPPED,
        "TRK1",
        2,
    )
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert set(InboundEvent.objects.values_list("order_number", flat=True)) == {order.number}


@pytest.mark.django_db
def test_a_pack_reported_by_the_wms_finishes_the_orders_pack_task(released, post):
    order, tasks = released
    for task in tasks:
        post(event("task.completed", {"task_id": task.pk}))
    pack = Task.objects.get(order=order, kind=Task.Kind.PACK)
    assert pack.status == Task.Status.CREATED  # waiting at the pack bench

    post(event("shipment.packed", {"order": order.number, "packages": 2}))

    pack.refresh_from_db()
    shipment = Shipment.objects.get(order=order)
    assert (pack.status, pack.done_quantity) == (Task.Status.COMPLETED, pack.quantity)
    assert pack.history.latest("history_id").history_reason == f"Packed as shipment {shipment.number}"
    assert not Task.objects.filter(order=order, status__in=Task.OPEN_STATES).exists()


@pytest.mark.django_db
def test_a_short_confirmation_short_picks_the_task(released, post):
    order, tasks = released
    post(event("task.short", {"task_id": tasks[0].pk, "done_quantity": 1, "note": "bin empty"}))
    tasks[0].refresh_from_db()
    assert (tasks[0].status, tasks[0].done_quantity) == (Task.Status.SHORT, 1)


@pytest.mark.django_db
def test_a_repeated_confirmation_is_ignored_not_failed(released, post):
    task = released[1][0]
    post(event("task.completed", {"task_id": task.pk}))
    post(event("task.completed", {"task_id": task.pk}))
    assert list(InboundEvent.objects.order_by("pk").values_list("status", flat=True)) == ["processed", "ignored"]
    assert "already completed" in InboundEvent.objects.order_by("pk").last().last_error


@pytest.mark.django_db
def test_stock_received_against_a_receipt_line(network, post):
    from inventory import services as inventory

    item = Item.objects.get(sku="API-B")
    receipt = inventory.receipt_create(
        number="ASN-1",
        warehouse=network,
        supplier="Supplier",
        lines=[{"item": item, "expected_quantity": 10}],
        actor=ACTOR,  # noqa: F405
        reason="Expected",
    )
    body = {"sku": "API-B", "warehouse": "DCA", "location": "P-02", "quantity": 10, "receipt": "ASN-1"}
    post(event("stock.received", {**body, "receipt_line": 1}))

    assert receipt.lines.get().received_quantity == 10
    assert StockMovement.objects.filter(source_ref="ASN-1").count() == 1


@pytest.mark.django_db
def test_count_recorded_for_an_open_count_and_an_unplanned_one(network, post):
    from inventory import services as inventory

    level = StockLevel.objects.get(item__sku="API-C", location__code="P-01")
    count = inventory.count_request(stock_level=level, actor=ACTOR, reason="Cycle count")  # noqa: F405
    post(event("count.recorded", {"count_id": count.pk, "counted_quantity": 100}))
    post(event("count.recorded", {"sku": "API-A", "warehouse": "DCA", "location": "P-01", "counted_quantity": 100}))

    assert CycleCount.objects.filter(status=CycleCount.Status.APPROVED).count() == 2
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}


@pytest.mark.django_db
def test_a_refused_event_fails_with_the_error_and_raises_an_integration_failure_case(released, post):
    response = post(event("task.started", {"task_id": 987654321}, event_id="ev-ghost"))

    assert response.status_code == 202
    stored = InboundEvent.objects.get(event_id="ev-ghost")
    assert stored.status == "failed" and "does not exist" in stored.last_error
    case = Case.objects.get(type__code="integration_failure", subject_id=str(stored.pk))
    assert case.subject_type == "integrations.inboundevent"
    assert case.context["event_id"] == "ev-ghost" and case.context["direction"] == "inbound"


@pytest.mark.django_db
def test_a_failed_event_can_be_replayed_after_the_fix(network, post, django_capture_on_commit_callbacks):
    body = {"sku": "API-A", "warehouse": "DCA", "location": "NEW-01", "quantity": 3}
    post(event("stock.received", body, event_id="ev-newloc"))
    stored = InboundEvent.objects.get(event_id="ev-newloc")
    assert stored.status == "failed"
    Location.objects.create(warehouse=network, code="NEW-01", zone="A", kind=Location.Kind.PICK)

    with django_capture_on_commit_callbacks(execute=True):
        inbound.inbound_event_replay(event=stored, actor=ACTOR, reason="Location created")  # noqa: F405

    stored.refresh_from_db()
    assert stored.status == "processed" and stored.attempts == 2
    with pytest.raises(inbound.DomainError):
        inbound.inbound_event_replay(event=stored, actor=ACTOR, reason="again")  # noqa: F405


@pytest.mark.django_db
def test_a_replayed_event_with_nothing_left_to_apply_closes_its_case(
    released, post, user_with_role, django_capture_on_commit_callbacks
):
    from orchestration import services as orchestration
    from portal.actors import Actor
    from portal.roles import Role

    order, tasks = released
    task = tasks[0]
    post(event("task.short", {"task_id": task.pk, "done_quantity": task.quantity}, event_id="ev-bad-short"))
    stored = InboundEvent.objects.get(event_id="ev-bad-short")
    case = Case.objects.get(type__code="integration_failure", subject_id=str(stored.pk))
    assert stored.status == "failed" and case.status == "open"
    # Meanwhile the picker confirmed the pick on the floor: the event has nothing left to do.
    orchestration.task_start(task=task, actor=ACTOR, reason="Scanner")  # noqa: F405
    orchestration.task_complete(task=task, done_quantity=task.quantity, actor=ACTOR, reason="Scanner")  # noqa: F405
    it = Actor.for_user(user_with_role(Role.IT_SUPPORT))

    with django_capture_on_commit_callbacks(execute=True):
        inbound.inbound_event_replay(event=stored, actor=it, reason="WMS says the short was keyed wrongly")

    stored.refresh_from_db()
    case.refresh_from_db()
    assert (stored.status, stored.attempts) == ("ignored", 2)
    assert case.status == "auto_resolved"
    assert "nothing left to apply" in case.resolution_note and "already completed" in case.resolution_note


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["inbound_event_replay", "inbound_event_discard"])
def test_only_it_support_or_an_operations_admin_may_replay_or_discard_an_event(network, post, user_with_role, action):
    from portal.actors import Actor
    from portal.domain import PermissionRefused
    from portal.roles import Role

    post(event("stock.received", {"sku": "API-A", "warehouse": "DCA", "location": "NOPE", "quantity": 1}))
    stored = InboundEvent.objects.get()
    supervisor = Actor.for_user(user_with_role(Role.WAREHOUSE_SUPERVISOR))

    with pytest.raises(PermissionRefused):
        getattr(inbound, action)(event=stored, actor=supervisor, reason="I know the location")

    stored.refresh_from_db()
    assert (stored.status, stored.attempts) == ("failed", 1)
    admin = Actor.for_user(user_with_role(Role.OPERATIONS_ADMIN))
    assert getattr(inbound, action)(event=stored, actor=admin, reason="Sorted with the WMS").status != "failed"


@pytest.mark.django_db
def test_the_cases_replay_and_discard_act_on_the_partner_event_not_on_an_outbound_message(
    network, post, user_with_role, django_capture_on_commit_callbacks
):
    from exceptions import services as exceptions
    from integrations.models import OutboundMessage
    from portal.actors import Actor
    from portal.roles import Role

    body = {"sku": "API-A", "warehouse": "DCA", "location": "NEW-02", "quantity": 3}
    post(event("stock.received", body, event_id="ev-fixme"))
    post(event("stock.received", {**body, "location": "NEW-03"}, event_id="ev-dropme"))
    fixme, dropme = (InboundEvent.objects.get(event_id=e) for e in ("ev-fixme", "ev-dropme"))
    outbound_before = list(OutboundMessage.objects.values_list("pk", "status", "attempts"))
    it = Actor.for_user(user_with_role(Role.IT_SUPPORT, username="ivy"))
    Location.objects.create(warehouse=network, code="NEW-02", zone="A", kind=Location.Kind.PICK)

    with django_capture_on_commit_callbacks(execute=True):
        replayed = exceptions.case_resolve(
            case=Case.objects.get(subject_type="integrations.inboundevent", subject_id=str(fixme.pk)),
            resolution="replay",
            actor=it,
            reason="Location NEW-02 created in the WMS master data",
        )
    discarded = exceptions.case_resolve(
        case=Case.objects.get(subject_type="integrations.inboundevent", subject_id=str(dropme.pk)),
        resolution="discard",
        actor=it,
        reason="Duplicate receipt keyed twice at the dock",
    )

    fixme.refresh_from_db()
    dropme.refresh_from_db()
    assert (fixme.status, replayed.status, replayed.resolution_code) == ("processed", "resolved", "replay")
    assert (dropme.status, discarded.resolution_code) == ("ignored", "discard")
    assert "Discarded by user:ivy" in dropme.last_error
    assert list(OutboundMessage.objects.values_list("pk", "status", "attempts")) == outbound_before


@pytest.mark.django_db
def test_a_partner_event_cannot_be_replayed_with_a_corrected_payload(network, post, user_with_role):
    from exceptions import services as exceptions
    from portal.actors import Actor
    from portal.domain import InvalidInput
    from portal.roles import Role

    post(event("stock.received", {"sku": "API-A", "warehouse": "DCA", "location": "NOPE", "quantity": 1}))
    case = Case.objects.get(type__code="integration_failure")
    it = Actor.for_user(user_with_role(Role.IT_SUPPORT))
    with pytest.raises(InvalidInput):
        exceptions.case_resolve(case=case, resolution="replay", actor=it, reason="fix", params={"payload": {}})
    case.refresh_from_db()
    assert case.status == "open"


@pytest.mark.django_db
def test_an_unexpected_error_is_retried_with_backoff_then_failed(network, wms, monkeypatch):
    calls = []

    def explode(event):
        calls.append(event.event_id)
        raise RuntimeError("adapter bug")

    monkeypatch.setitem(inbound._handlers, "task.started", inbound.EventHandler("task.started", explode))
    now = timezone.now()
    inbound.event_accept(
        partner=wms[0], event_id="ev-boom", event_type="task.started", occurred_at=now, payload={"task_id": 1}
    )
    for attempt in range(1, inbound.MAX_ATTEMPTS + 1):
        inbound.event_process_next(subject_key="task:1", now=now)
        stored = InboundEvent.objects.get(event_id="ev-boom")
        assert stored.attempts == attempt
        if attempt < inbound.MAX_ATTEMPTS:
            assert stored.status == "pending" and stored.next_attempt_at > now
            assert inbound.event_process_next(subject_key="task:1", now=now) is None  # not due yet
            now = stored.next_attempt_at
    assert stored.status == "failed" and "RuntimeError: adapter bug" in stored.last_error
    assert len(calls) == inbound.MAX_ATTEMPTS


# --- ordering per subject --------------------------------------------------------------------


def _accept(partner, event_id: str, location: str, quantity: int) -> None:
    inbound.event_accept(
        partner=partner,
        event_id=event_id,
        event_type="stock.received",
        occurred_at=timezone.now(),
        payload={"sku": "API-A", "warehouse": "DCA", "location": location, "quantity": quantity},
    )


@pytest.mark.django_db
def test_events_of_one_subject_run_in_arrival_order(network, wms):
    for index in range(5):
        _accept(wms[0], f"ev-{index}", "P-01", index + 1)

    assert inbound.events_process_due(now=timezone.now() + dt.timedelta(minutes=1)) == 5

    movements = StockMovement.objects.filter(source_type="event").order_by("pk")
    assert list(movements.values_list("source_ref", flat=True)) == [f"ev-{i}" for i in range(5)]


@contextmanager
def another_worker_holding(event: InboundEvent):
    """Another worker's transaction holding the event's row lock (as while it processes the event)."""
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=settings["NAME"]
    ) as other_worker:
        other_worker.execute("SELECT id FROM integrations_inboundevent WHERE id = %s FOR UPDATE", [event.pk])
        yield
        other_worker.rollback()


@pytest.mark.django_db(transaction=True)
def test_no_two_events_of_one_subject_run_at_once(network, wms, monkeypatch):
    """While another worker holds a subject's head, neither the head nor a later event of it is taken."""
    monkeypatch.setattr(inbound, "enqueue_subject", lambda subject_key: None)  # no worker: this test is the worker
    _accept(wms[0], "ev-head", "P-01", 1)
    _accept(wms[0], "ev-next", "P-01", 2)
    _accept(wms[0], "ev-other", "P-02", 3)  # same item and warehouse: the same subject
    Item.objects.create(sku="API-Z", description="Z")
    inbound.event_accept(
        partner=wms[0],
        event_id="ev-elsewhere",
        event_type="stock.received",
        occurred_at=timezone.now(),
        payload={"sku": "API-Z", "warehouse": "DCA", "location": "P-01", "quantity": 4},
    )
    head = InboundEvent.objects.get(event_id="ev-head")
    with another_worker_holding(head):
        assert inbound.event_process_next(subject_key=head.subject_key) is None
        assert inbound.events_process_due(now=timezone.now() + dt.timedelta(minutes=1)) == 1  # only API-Z's
    assert inbound.events_process_subject(subject_key=head.subject_key) == 3
    refs = list(StockMovement.objects.filter(source_type="event").order_by("pk").values_list("source_ref", flat=True))
    assert refs == ["ev-elsewhere", "ev-head", "ev-next", "ev-other"]


@pytest.mark.django_db(transaction=True)
def test_an_event_stored_while_its_subjects_head_is_processed_is_not_left_behind(network, wms, monkeypatch):
    """Its own task found the head held and went away; the worker holding the head picks it up after commit."""
    import threading

    from inventory import services as inventory

    monkeypatch.setattr(inbound, "enqueue_subject", lambda subject_key: None)  # the turned-away task
    _accept(wms[0], "ev-head", "P-01", 1)
    receive = inventory.stock_receive

    def another_request():
        try:
            _accept(wms[0], "ev-late", "P-01", 2)
        finally:
            connection.close()  # this thread's own connection

    def receive_while_another_arrives(**kwargs):
        if kwargs["source_ref"] == "ev-head":  # stored and committed by another request meanwhile
            arrival = threading.Thread(target=another_request)
            arrival.start()
            arrival.join()
        return receive(**kwargs)

    monkeypatch.setattr(inventory, "stock_receive", receive_while_another_arrives)
    head = InboundEvent.objects.get(event_id="ev-head")

    assert inbound.events_process_subject(subject_key=head.subject_key) == 2

    assert set(InboundEvent.objects.values_list("event_id", "status")) == {
        ("ev-head", "processed"),
        ("ev-late", "processed"),
    }
    refs = StockMovement.objects.filter(source_type="event").order_by("pk").values_list("source_ref", flat=True)
    assert list(refs) == ["ev-head", "ev-late"]


# --- the registry ------------------------------------------------------------------------------


def test_automation_registers_its_wcs_handlers_with_the_registry():
    from automation import inbound as automation_inbound

    assert automation_inbound.registered is True
    for kind in ("equipment.status", "wcs.task.completed", "wcs.heartbeat", "wcs.equipment.jam"):
        assert inbound.handler_for(kind).handler is automation_inbound.HANDLERS[kind]
    for kind in ("task.completed", "stock.received", "count.recorded", "shipment.shipped"):
        assert inbound.handler_for(kind) is not None


def test_subjects_of_equipment_and_unknown_events():
    assert inbound.subject_of("equipment.status", {"equipment": "AMR-1"}, "e1") == ("equipment:AMR-1", "")
    assert inbound.subject_of("x.y", {}, "e2") == ("event:e2", "")
    assert len(inbound.subject_of("x.y", {"order": "S" * 500}, "e3")[0]) <= 100
