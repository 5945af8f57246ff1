"""Idempotency-Key on POST /api/v1/orders: replay, reuse with another body, in progress, expiry — and 100 racers."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import random
import time
import uuid

import httpx
import pytest
from django.db.models import Count
from django.utils import timezone

from integrations import idempotency
from integrations.models import IdempotencyRecord, OutboundMessage
from orchestration.models import Order
from portal.models import DomainEvent
from tests.integrations.api_support import *  # noqa: F403


def post_with_key(client, body: dict, key: str):
    return client.post("/api/v1/orders", body, HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.django_db
def test_the_same_key_and_body_replays_the_first_response(network, erp, api_client):
    client = api_client(erp[1])
    body = order_body("PO-I1")  # noqa: F405

    first = post_with_key(client, body, "key-1")
    again = client.post(
        "/api/v1/orders",
        raw=json.dumps(body, indent=2, sort_keys=True).encode(),  # same JSON, other spacing and key order
        HTTP_IDEMPOTENCY_KEY="key-1",
    )

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotency-Replayed"] == "true"
    assert Order.objects.filter(external_ref="PO-I1").count() == 1
    record = IdempotencyRecord.objects.get(key="key-1")
    assert (record.state, record.status_code, record.order_number) == ("done", 201, first.json()["number"])


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_422(network, erp, api_client):
    client = api_client(erp[1])
    post_with_key(client, order_body("PO-I2"), "key-2")  # noqa: F405

    response = post_with_key(client, order_body("PO-I3"), "key-2")  # noqa: F405

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert not Order.objects.filter(external_ref="PO-I3").exists()


@pytest.mark.django_db
def test_keys_are_per_partner(network, erp, other_erp, api_client):
    body = order_body("PO-I4")  # noqa: F405
    assert post_with_key(api_client(erp[1]), body, "shared").status_code == 201
    assert post_with_key(api_client(other_erp[1]), body, "shared").status_code == 201
    assert Order.objects.filter(external_ref="PO-I4").count() == 2


@pytest.mark.django_db
def test_a_key_in_progress_is_409_until_its_lock_runs_out(network, erp, api_client):
    partner, token = erp
    body = order_body("PO-I5")  # noqa: F405
    raw = json.dumps(body).encode()
    now = timezone.now()
    claim = idempotency.idempotency_claim(
        partner=partner, key="key-5", request_hash=idempotency.fingerprint("POST", "/api/v1/orders", raw), now=now
    )
    assert claim.record is not None

    busy = api_client(token).post("/api/v1/orders", raw=raw, HTTP_IDEMPOTENCY_KEY="key-5")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "idempotency_in_progress"
    assert not Order.objects.exists()

    IdempotencyRecord.objects.filter(pk=claim.record.pk).update(locked_until=now - dt.timedelta(seconds=1))
    taken_over = api_client(token).post("/api/v1/orders", raw=raw, HTTP_IDEMPOTENCY_KEY="key-5")
    assert taken_over.status_code == 201


@pytest.mark.django_db
def test_a_refused_request_releases_its_key(network, erp, api_client):
    client = api_client(erp[1])
    bad = order_body("PO-I6", customer="nobody")  # noqa: F405

    assert post_with_key(client, bad, "key-6").status_code == 422
    assert not IdempotencyRecord.objects.exists()
    assert post_with_key(client, order_body("PO-I6"), "key-6").status_code == 201  # noqa: F405


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", " ", "x" * 201, "clé", "a\tb"])
def test_an_unusable_key_is_422(network, erp, api_client, key):
    response = post_with_key(api_client(erp[1]), order_body(), key)  # noqa: F405
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_idempotency_key"
    assert not Order.objects.exists()


@pytest.mark.django_db
def test_keys_are_kept_24_hours_then_expired(network, erp, api_client, settings):
    post_with_key(api_client(erp[1]), order_body("PO-I7"), "key-7")  # noqa: F405
    created = IdempotencyRecord.objects.get(key="key-7").created_at

    assert idempotency.idempotency_keys_expire(now=created + dt.timedelta(hours=23, minutes=59)) == 0
    assert idempotency.idempotency_keys_expire(now=created + dt.timedelta(hours=24, seconds=1)) == 1
    assert not IdempotencyRecord.objects.exists()


def test_the_expiry_task_is_on_the_beat_schedule(settings):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"integrations.inbound.expire_idempotency_keys", "integrations.inbound.process_due"} <= tasks


@pytest.mark.django_db(transaction=True)
def test_a_busy_database_is_503_with_retry_after_and_the_key_can_be_used_again(network, erp, api_client, monkeypatch):
    """A deadlock victim, a restart or no free pooled connection: nothing changed, so the partner sends it again."""
    from django.db import OperationalError

    from integrations import inbound

    submit = inbound.partner_order_submit
    client = api_client(erp[1])
    body = order_body("PO-BUSY")  # noqa: F405
    events_before = DomainEvent.objects.count()

    def deadlocked(**kwargs):
        submit(**kwargs)  # the order's writes happen, then the database picks this transaction as the victim
        raise OperationalError("deadlock detected")

    monkeypatch.setattr(inbound, "partner_order_submit", deadlocked)
    response = post_with_key(client, body, "busy-key")  # noqa: F405

    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "unavailable"
    assert response["Retry-After"] == "1"
    assert not Order.objects.exists()
    assert DomainEvent.objects.count() == events_before
    assert not IdempotencyRecord.objects.exists()

    monkeypatch.setattr(inbound, "partner_order_submit", submit)
    again = post_with_key(client, body, "busy-key")

    assert again.status_code == 201, again.content
    assert Order.objects.get().external_ref == "PO-BUSY"


# --- 100 identical POSTs from 100 processes against a real server ---------------------------

RACERS = 100


def _race(url: str, token: str, key: str, raw: bytes, start, results) -> None:
    """POST once at the signal; a 503 from the server's concurrency limit is retried, as a partner would."""
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key, "Content-Type": "application/json"}
    with httpx.Client(timeout=60) as client:
        start.wait()
        for _ in range(200):
            response = client.post(url, content=raw, headers=headers)
            if response.status_code != 503:
                break
            time.sleep(random.uniform(0.02, 0.1))
        results.put((response.status_code, response.text))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_100_concurrent_identical_posts_make_one_order(network, erp):
    """uvicorn (4 workers) on the test database; 100 processes post the same order with the same key at once.

    The server admits 10 requests per worker at a time (each in-flight request holds a database
    connection; the machine's PostgreSQL is shared); the rest get 503 and retry at once.
    """
    partner, token = erp
    port = free_port()  # noqa: F405
    command = [
        str(BIN / "uvicorn"), "portal.asgi:application", "--port", str(port), "--workers", "4",  # noqa: F405
        "--limit-concurrency", "10", "--no-access-log",
    ]  # fmt: skip
    server = start_process(command, server_env(), ready=lambda: _healthy(port))  # noqa: F405
    try:
        body = order_body(f"PO-RACE-{uuid.uuid4().hex[:6]}")  # noqa: F405
        raw = json.dumps(body).encode()
        context = multiprocessing.get_context("fork")
        start, results = context.Event(), context.Queue()
        racers = [
            context.Process(
                target=_race, args=(f"http://127.0.0.1:{port}/api/v1/orders", token, "race-key", raw, start, results)
            )
            for _ in range(RACERS)
        ]
        for racer in racers:
            racer.start()
        time.sleep(0.5)
        start.set()
        answers = [results.get(timeout=120) for _ in racers]
        for racer in racers:
            racer.join(timeout=30)
    finally:
        log = stop_process(server)  # noqa: F405

    statuses = [status for status, _ in answers]
    unexpected = [text[:500] for status, text in answers if status not in {201, 409}]
    server_errors = "\n".join(line for line in log.splitlines() if "Exceeded concurrency limit" not in line)
    assert not unexpected, (sorted(set(statuses)), unexpected[:3], server_errors[-6000:])
    created = [json.loads(text) for status, text in answers if status == 201]
    assert created and all(document == created[0] for document in created)
    conflicts = [json.loads(text)["error"]["code"] for status, text in answers if status == 409]
    assert set(conflicts) <= {"idempotency_in_progress"}

    order = Order.objects.get(source=partner.code, external_ref=body["external_ref"])
    assert Order.objects.count() == 1
    assert created[0]["number"] == order.number
    assert DomainEvent.objects.filter(name="order.received", subject_id=str(order.pk)).count() == 1
    per_type = OutboundMessage.objects.filter(order_number=order.number).values("message_type").annotate(n=Count("pk"))
    assert {row["message_type"] for row in per_type} >= {"order.accepted"}  # the ERP hears of it once
    assert all(row["n"] == 1 for row in per_type), list(per_type)
    assert IdempotencyRecord.objects.get(key="race-key").state == "done"


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/api/v1/availability", timeout=1).status_code == 401
    except httpx.HTTPError:
        return False
