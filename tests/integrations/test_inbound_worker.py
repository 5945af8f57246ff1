"""Signed events processed by a real Celery worker (two processes), in order per subject, none lost or doubled."""

from __future__ import annotations

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
def worker(settings, monkeypatch):
    """`celery -A portal worker` (prefork, 2 processes) on a queue of this test's own, on the test database."""
    queue = f"inbound-test-{uuid.uuid4().hex[:10]}"
    settings.INBOUND_QUEUE = queue
    monkeypatch.setattr(celery_app.conf, "task_always_eager", False)
    command = [
        str(BIN / "celery"), "-A", "portal", "worker", "--pool", "prefork", "--concurrency", "2",  # noqa: F405
        "-Q", queue, "-n", f"{queue}@%h", "--without-mingle", "--without-gossip", "--loglevel", "WARNING",
    ]  # fmt: skip
    process = start_process(command, server_env())  # noqa: F405
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
