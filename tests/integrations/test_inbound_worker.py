"""Signed events processed by a real Celery worker (two processes), in order per subject, none lost or doubled,
even when the worker is killed with SIGKILL part way through."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest
from django.utils import timezone

from integrations.models import InboundEvent
from inventory.models import Item, StockLevel, StockMovement
from portal.celery import app as celery_app
from tests.integrations.api_support import *  # noqa: F403

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PER_SUBJECT = 25


@pytest.fixture
def inbound_queue(settings, monkeypatch) -> str:
    """A queue of this test's own for inbound events, on the real broker."""
    queue = f"inbound-test-{uuid.uuid4().hex[:10]}"
    settings.INBOUND_QUEUE = queue
    # Tasks go to the broker, not run in this process (the settings' namespaced key is the one Celery reads).
    monkeypatch.setattr(celery_app.conf, "CELERY_TASK_ALWAYS_EAGER", False)
    return queue


def start_worker(queue: str):
    """`celery -A portal worker` (prefork, 2 processes) on `queue`, on the test database."""
    command = [
        str(BIN / "celery"), "-A", "portal", "worker", "--pool", "prefork", "--concurrency", "2",  # noqa: F405
        "-Q", queue, "-n", f"{queue}-{uuid.uuid4().hex[:4]}@%h", "--without-mingle", "--without-gossip",
        "--loglevel", "WARNING",
    ]  # fmt: skip
    return start_process(command, server_env())  # noqa: F405


@pytest.fixture
def worker(inbound_queue):
    process = start_worker(inbound_queue)
    yield process
    log = stop_process(process)  # noqa: F405
    assert "Traceback" not in log, log[-4000:]


def test_a_real_worker_processes_events_in_order_per_subject(network, wms, api_client, worker):
    Item.objects.create(sku="API-W", description="Second subject")
    client = api_client(wms[1])
    sent = {"API-A": [], "API-W": []}
    for index in range(PER_SUBJECT):
        for sku in sent:  # interleaved: two subjects, each a strict sequence
            body = {
                "event_id": f"{sku}-{index:03d}",
                "type": "stock.received",
                "occurred_at": timezone.now().isoformat(),
                "payload": {"sku": sku, "warehouse": "DCA", "location": "P-02", "quantity": index + 1},
            }
            response = client.event(body)
            assert response.status_code == 202, response.content
            sent[sku].append(body["event_id"])
    duplicate = client.event({**body, "payload": {**body["payload"], "quantity": 999}})
    assert duplicate.status_code == 200 and duplicate.json()["status"] == "duplicate"

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and InboundEvent.objects.filter(status="pending").exists():
        time.sleep(0.2)

    assert not InboundEvent.objects.exclude(status="processed").exists(), list(
        InboundEvent.objects.exclude(status="processed").values("event_id", "status", "last_error")
    )
    for sku, event_ids in sent.items():
        applied = StockMovement.objects.filter(source_type="event", stock_level__item__sku=sku).order_by("pk")
        assert list(applied.values_list("source_ref", flat=True)) == event_ids
        level = StockLevel.objects.get(item__sku=sku, location__code="P-02")
        assert level.on_hand == sum(range(1, PER_SUBJECT + 1))
    processed = InboundEvent.objects.filter(event_id__startswith="API-A").order_by("processed_at", "pk")
    assert list(processed.values_list("event_id", flat=True)) == sent["API-A"]


KILLED_ITEMS, KILLED_PER_ITEM = 40, 100


def test_a_worker_killed_while_booking_arrivals_loses_none_and_books_none_twice(
    network, wms, api_client, inbound_queue
):
    from integrations.inbound_tasks import process_due_inbound_events

    skus = [f"KILL-{n}" for n in range(KILLED_ITEMS)]
    Item.objects.bulk_create([Item(sku=sku, description=sku) for sku in skus])
    client = api_client(wms[1])
    arrivals = [
        {
            "event_id": f"{sku}-{index:03d}",
            "type": "stock.received",
            "occurred_at": timezone.now().isoformat(),
            "payload": {"sku": sku, "warehouse": "DCA", "location": "P-02", "quantity": index % 7 + 1},
        }
        for index in range(KILLED_PER_ITEM)
        for sku in skus
    ]
    for start in range(0, len(arrivals), 50):
        assert client.events(arrivals[start : start + 50]).status_code == 202
    processed = InboundEvent.objects.filter(status="processed")

    first = start_worker(inbound_queue)
    deadline = time.monotonic() + 60
    while not processed.exists() and time.monotonic() < deadline:  # the first batch has been booked
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the main process and its pool: no shutdown, no acks
    first.wait()
    first.output.close()
    settled_before_the_kill = processed.count()
    assert 0 < settled_before_the_kill < len(arrivals), settled_before_the_kill

    second = start_worker(inbound_queue)
    try:
        deadline = time.monotonic() + 120
        while InboundEvent.objects.filter(status="pending").exists() and time.monotonic() < deadline:
            process_due_inbound_events.apply_async(queue=inbound_queue)  # beat's sweep, run by the worker
            time.sleep(1)
    finally:
        log = stop_process(second)  # noqa: F405
    assert "Traceback" not in log, log[-4000:]

    assert InboundEvent.objects.count() == processed.count() == len(arrivals)
    for sku in skus:
        sent = [event for event in arrivals if event["payload"]["sku"] == sku]
        booked = StockMovement.objects.filter(source_type="event", stock_level__item__sku=sku).order_by("pk")
        assert list(booked.values_list("source_ref", flat=True)) == [event["event_id"] for event in sent]  # in order
        level = StockLevel.objects.get(item__sku=sku, location__code="P-02")
        assert level.on_hand == sum(event["payload"]["quantity"] for event in sent)  # none lost, none twice
