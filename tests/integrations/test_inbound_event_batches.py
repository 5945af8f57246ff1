"""POST /api/v1/events/batch: many signed events in one request, stored together or not at all."""

from __future__ import annotations

import pytest

from integrations.models import InboundEvent
from inventory.models import StockLevel, StockMovement
from orchestration.models import Order, Task
from tests.integrations.api_support import *  # noqa: F403
from tests.integrations.test_inbound_events import assert_error, event

pytestmark = pytest.mark.django_db


def received(quantity: int, location: str = "P-02", **kwargs) -> dict:
    return event(
        "stock.received", {"sku": "API-A", "warehouse": "DCA", "location": location, "quantity": quantity}, **kwargs
    )


@pytest.fixture
def send(wms, api_client, django_capture_on_commit_callbacks):
    """Post a signed batch as the WMS and run what its commit schedules (the eager worker)."""
    client = api_client(wms[1])

    def post(events, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return client.events(events, **kwargs)

    return post


def on_hand(location: str = "P-02") -> int:
    level = StockLevel.objects.filter(item__sku="API-A", location__code=location).first()
    return level.on_hand if level else 0


def test_a_batch_is_stored_and_processed_in_the_order_sent(network, send):
    batch = [received(n, event_id=f"b-{n}") for n in (1, 2, 3)]

    response = send(batch)

    assert response.status_code == 202, response.content
    assert response.json() == {
        "accepted": 3,
        "duplicates": 0,
        "events": [{"status": "accepted", "event_id": f"b-{n}", "event_status": "pending"} for n in (1, 2, 3)],
    }
    assert on_hand() == 6
    stored = list(InboundEvent.objects.order_by("pk").values_list("event_id", "status"))
    assert stored == [("b-1", "processed"), ("b-2", "processed"), ("b-3", "processed")]
    movements = StockMovement.objects.filter(stock_level__location__code="P-02", kind="receipt").order_by("pk")
    assert [m.on_hand_delta for m in movements] == [1, 2, 3]


def test_events_of_several_orders_in_one_batch(network, erp, api_client, send):
    numbers = [api_client(erp[1]).post("/api/v1/orders", order_body()).json()["number"] for _ in range(2)]  # noqa: F405
    tasks = [
        Task.objects.filter(order__number=number, kind=Task.Kind.PICK).order_by("pk").first() for number in numbers
    ]

    response = send([event("task.started", {"task_id": task.pk}) for task in tasks])

    assert response.status_code == 202, response.content
    assert {t.status for t in Task.objects.filter(pk__in=[t.pk for t in tasks])} == {Task.Status.IN_PROGRESS}
    subjects = set(InboundEvent.objects.values_list("subject_key", flat=True))
    assert subjects == {f"order:{number}" for number in numbers}
    assert Order.objects.filter(number__in=numbers, status=Order.Status.PICKING).count() in (0, 2)


def test_repeats_earlier_or_within_the_batch_are_answered_duplicate_and_applied_once(network, send):
    assert send([received(5, event_id="r-1")]).status_code == 202

    response = send([received(5, event_id="r-1"), received(7, event_id="r-2"), received(7, event_id="r-2")])

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (1, 2)
    assert [answer["status"] for answer in body["events"]] == ["duplicate", "accepted", "duplicate"]
    assert body["events"][0]["event_status"] == "processed"
    assert on_hand() == 12
    assert dict(InboundEvent.objects.values_list("event_id", "duplicates")) == {"r-1": 1, "r-2": 1}


@pytest.mark.parametrize(
    "bad, field",
    [
        (event("task.teleported", {"task_id": 1}), "events.1.type"),
        (event("task.started", {"task_id": "one"}), "events.1.payload.task_id"),
        ({"event_id": "x", "type": "task.started", "payload": {}}, "events.1.occurred_at"),
    ],
)
def test_one_bad_event_refuses_the_whole_batch_naming_it(network, send, bad, field):
    response = send([received(1), bad, received(2)])

    error = assert_error(response, 422, response.json()["error"]["code"])
    assert field in error["fields"], error
    assert not InboundEvent.objects.exists()
    assert on_hand() == 0


@pytest.mark.parametrize("events", [[], [received(1)] * 501])
def test_an_empty_or_oversized_batch_is_422(network, send, events):
    response = send(events)

    assert_error(response, 422, "invalid")
    assert "events" in response.json()["error"]["fields"]
    assert not InboundEvent.objects.exists()


def test_a_batch_needs_the_signature_over_its_body(network, wms, api_client):
    response = api_client(wms[1]).events([received(1)], secret="not-the-secret")

    assert_error(response, 401, response.json()["error"]["code"])
    assert not InboundEvent.objects.exists()


def test_a_batch_needs_the_events_scope(network, api_client):
    from integrations.models import Partner

    _, token = make_partner("erp-noevents", Partner.Kind.ERP, ["orders:write"])  # noqa: F405
    assert_error(api_client(token).events([received(1)]), 403, "forbidden")
    assert not InboundEvent.objects.exists()


def test_an_erp_cannot_replay_a_wms_event_id_into_the_wms_history(network, send, api_client):
    from integrations.models import Partner

    _, token = make_partner("wms-b", Partner.Kind.WMS, ["events:write"])  # noqa: F405
    send([received(1, event_id="shared")])

    response = api_client(token).events([received(1, event_id="shared")])

    assert response.json()["events"][0]["status"] == "accepted"  # event ids are per partner
    assert InboundEvent.objects.filter(event_id="shared").count() == 2


def test_a_batch_of_task_events_looks_their_orders_up_at_once(network, erp, wms, api_client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from integrations import inbound

    numbers = [api_client(erp[1]).post("/api/v1/orders", order_body()).json()["number"] for _ in range(3)]  # noqa: F405
    tasks = list(Task.objects.filter(order__number__in=numbers, kind=Task.Kind.PICK).order_by("pk"))

    def accept(batch_tasks) -> int:
        events = [
            {"event_id": f"q-{task.pk}-{len(batch_tasks)}", "type": "task.started", "occurred_at": timezone.now(),
             "payload": {"task_id": task.pk}}
            for task in batch_tasks
        ]  # fmt: skip
        with CaptureQueriesContext(connection) as queries:
            accepted = inbound.events_accept_many(partner=wms[0], events=events)
        assert {a.event.subject_key for a in accepted} == {f"order:{t.order.number}" for t in batch_tasks}
        return len(queries.captured_queries)

    assert accept(tasks[:1]) == accept(tasks)  # not a query per event


def test_a_batchs_subjects_go_to_the_workers_a_few_tasks_for_all_of_them(network, send, monkeypatch):
    from integrations import inbound
    from integrations.inbound_tasks import process_inbound_subjects
    from inventory.models import Item

    monkeypatch.setattr(inbound, "SUBJECTS_PER_TASK", 2)
    queued = []
    apply_async = process_inbound_subjects.apply_async

    def record(args, **kwargs):
        queued.append(list(args[0]))
        return apply_async(args, **kwargs)

    monkeypatch.setattr(process_inbound_subjects, "apply_async", record)
    skus = [f"API-S{n}" for n in range(5)]
    Item.objects.bulk_create([Item(sku=sku, description=sku) for sku in skus])
    batch = [
        event("stock.received", {"sku": sku, "warehouse": "DCA", "location": "P-02", "quantity": 1})
        for sku in [*skus, skus[0]]  # six events, five subjects
    ]

    response = send(batch)

    assert response.status_code == 202, response.content
    subjects = list(dict.fromkeys(InboundEvent.objects.order_by("pk").values_list("subject_key", flat=True)))
    assert queued == [subjects[0:2], subjects[2:4], subjects[4:]]
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert StockMovement.objects.filter(stock_level__item__sku__in=skus, kind="receipt").count() == 6
