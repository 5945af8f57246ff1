"""Outbound delivery against a real HTTP partner (the simulator's receiver in a thread): outcomes, backoff,
Retry-After, refusals, ordering per key, the sweeper and the tick's claim."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.utils import timezone

from integrations import delivery
from integrations.models import OutboundAttempt, OutboundMessage
from integrations.outbound import message_send
from portal.actors import Actor

ACTOR = Actor.system("test")
Status = OutboundMessage.Status


@pytest.fixture
def erp(erp_on_receiver):
    return erp_on_receiver(max_attempts=4)


def send(erp, key="order:SO1", n=1, **payload):
    return message_send(
        partner_kind="erp",
        partner=erp,
        message_type="order.accepted",
        payload={"order": "SO1", "n": n, **payload},
        ordering_key=key,
        order_number="SO1",
        actor=ACTOR,
    )


def fault(receiver, **values):
    with receiver.lock:
        receiver.faults["erp"].update(values)


# --- backoff -------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_and_stops_at_the_cap(settings):
    settings.OUTBOUND_BACKOFF_BASE_SECONDS = 2
    settings.OUTBOUND_BACKOFF_MAX_SECONDS = 60
    rng = random.Random(1)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (12, 60)]:
        delays = [delivery.backoff_seconds(attempt, rng=rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 4  # jitter spreads retries out


# --- outcomes ------------------------------------------------------------------------------


def test_a_2xx_delivers_with_the_idempotency_key_and_a_valid_signature(erp, receiver):
    message = send(erp)

    assert delivery.message_deliver(message_id=message.pk) == "delivered"

    message.refresh_from_db()
    assert message.status == Status.DELIVERED and message.attempts == 1 and message.delivered_at
    book = receiver.books["erp"]
    assert list(book.applied) == [str(message.idempotency_key)]
    assert book.bad_signatures == 0
    assert book.sequence[0]["path"] == "/erp/orders/acknowledgements"
    assert [a.outcome for a in message.attempt_log.all()] == [OutboundAttempt.Outcome.DELIVERED]


def test_a_bad_secret_is_refused_by_the_partner_and_not_retried(erp, receiver):
    erp.webhook_secret = "wrong"
    erp.save()
    message = send(erp)

    assert delivery.message_deliver(message_id=message.pk) == OutboundAttempt.Outcome.REFUSED

    message.refresh_from_db()
    assert message.status == Status.DEAD and message.last_status_code == 401
    assert receiver.books["erp"].bad_signatures == 1


def test_a_5xx_is_retried_later_with_backoff_from_the_database(erp, receiver, settings):
    settings.OUTBOUND_BACKOFF_BASE_SECONDS = 10
    fault(receiver, outage_seconds=60)
    message = send(erp)
    before = timezone.now()

    assert delivery.message_deliver(message_id=message.pk) == OutboundAttempt.Outcome.RETRY

    message.refresh_from_db()
    assert message.status == Status.PENDING and message.attempts == 1
    assert message.last_status_code == 503 and "HTTP 503" in message.last_error
    wait = (message.next_attempt_at - before).total_seconds()
    assert 5 <= wait <= 11
    assert delivery.message_deliver(message_id=message.pk) == "not_due"  # a stray task cannot jump the backoff
    assert message.attempt_log.count() == 1


def test_retry_after_is_honoured_on_429(erp, receiver):
    fault(receiver, outage_seconds=60, error_status=429, retry_after=120)
    message = send(erp)
    before = timezone.now()

    delivery.message_deliver(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Status.PENDING
    assert 119 <= (message.next_attempt_at - before).total_seconds() <= 122


def test_retry_after_http_date_is_understood():
    later = dt.datetime(2030, 1, 1, 12, 0, 30, tzinfo=dt.UTC)
    from integrations.adapters.base import parse_retry_after

    assert parse_retry_after("Tue, 01 Jan 2030 12:00:30 GMT", now=later - dt.timedelta(seconds=30)) == 30
    assert parse_retry_after("soon") is None and parse_retry_after("7") == 7


@pytest.mark.parametrize("code", [400, 404, 422])
def test_a_4xx_refusal_is_a_dead_letter_at_once(erp, receiver, code):
    fault(receiver, refuse_status=code)
    message = send(erp)

    delivery.message_deliver(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Status.DEAD and message.attempts == 1 and message.dead_at
    assert message.attempt_log.get().outcome == OutboundAttempt.Outcome.REFUSED


@pytest.mark.parametrize("code", [408, 409, 425, 429])
def test_retryable_client_errors_are_retried(erp, receiver, code):
    fault(receiver, refuse_status=code)
    message = send(erp)

    delivery.message_deliver(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Status.PENDING and message.attempts == 1


def test_after_the_partners_attempts_the_message_is_dead(erp, receiver):
    fault(receiver, outage_seconds=60)
    message = send(erp)
    for _ in range(erp.max_attempts):
        OutboundMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
        delivery.message_deliver(message_id=message.pk)

    message.refresh_from_db()
    assert message.status == Status.DEAD and message.attempts == erp.max_attempts
    outcomes = list(message.attempt_log.values_list("outcome", flat=True))
    assert outcomes == ["retry"] * (erp.max_attempts - 1) + ["dead"]


def test_an_unreachable_partner_is_a_retry_not_a_crash(erp):
    erp.outbound_base_url = "http://127.0.0.1:9/erp"
    erp.save()
    message = send(erp)

    assert delivery.message_deliver(message_id=message.pk) == OutboundAttempt.Outcome.RETRY

    message.refresh_from_db()
    assert message.last_status_code is None and message.last_error.startswith("unreachable")


def test_a_dead_letter_raises_an_integration_failure_case(erp, receiver):
    services = pytest.importorskip("exceptions.services")
    from exceptions.models import Case, ExceptionType

    if not ExceptionType.objects.filter(code="integration_failure").exists():
        pytest.skip("integration_failure type not configured")
    fault(receiver, refuse_status=422)
    message = send(erp)

    delivery.message_deliver(message_id=message.pk)

    case = Case.objects.get(subject_type="integrations.outboundmessage", subject_id=str(message.pk))
    assert case.type.code == "integration_failure"
    assert case.context["partner"] == "erp-test" and case.context["attempts"] == 1
    assert "HTTP 422" in case.context["last_error"]
    assert services  # the contract module is importable


# --- ordering per key -------------------------------------------------------------------


def test_a_later_message_waits_for_an_earlier_one_of_the_same_key(erp, receiver):
    first, second = send(erp, n=1), send(erp, n=2)
    other = send(erp, key="order:SO2", n=3)
    fault(receiver, outage_seconds=60)
    delivery.message_deliver(message_id=first.pk)  # fails, back to pending in backoff
    fault(receiver, outage_seconds=0)

    assert delivery.message_deliver(message_id=second.pk) == "waiting"
    assert delivery.message_deliver(message_id=other.pk) == "delivered"  # other keys are not held back
    assert second.pk not in delivery.due_messages_claim(now=timezone.now() + dt.timedelta(hours=1))

    OutboundMessage.objects.filter(pk=first.pk).update(next_attempt_at=timezone.now(), claimed_until=None)
    assert delivery.message_deliver(message_id=first.pk) == "delivered"
    assert delivery.message_deliver(message_id=second.pk) == "delivered"
    ids = [r["message_id"] for r in receiver.books["erp"].sequence if r["ordering_key"] == "order:SO1"]
    assert ids == [first.pk, second.pk]
    assert receiver.books["erp"].out_of_order == 0


def test_a_dead_letter_blocks_its_key_until_discarded(erp, receiver):
    from integrations import services

    first, second = send(erp, n=1), send(erp, n=2)
    fault(receiver, refuse_status=422)
    delivery.message_deliver(message_id=first.pk)
    fault(receiver, refuse_status=None)
    assert delivery.message_deliver(message_id=second.pk) == "waiting"
    assert delivery.blocker_of(second).pk == first.pk

    services.message_discard(message_id=first.pk, actor=ACTOR, reason="Superseded by a manual booking")

    assert delivery.message_deliver(message_id=second.pk) == "delivered"


# --- the tick ---------------------------------------------------------------------------------


def test_the_tick_claims_due_heads_once_with_skip_locked(erp):
    first, second = send(erp, n=1), send(erp, n=2)
    third = send(erp, key="order:SO9")
    OutboundMessage.objects.update(claimed_until=None)

    claimed = delivery.due_messages_claim()

    assert claimed == [first.pk, third.pk]  # the second waits behind the first
    assert delivery.due_messages_claim() == []  # queued tasks own them until the claim lapses
    later = timezone.now() + dt.timedelta(seconds=120)
    assert delivery.due_messages_claim(now=later) == [first.pk, third.pk]  # a lost task is queued again
    assert second.pk


def test_the_sweeper_requeues_rows_stuck_in_sending_past_the_lease(erp):
    message = send(erp)
    now = timezone.now()
    OutboundMessage.objects.filter(pk=message.pk).update(
        status=Status.SENDING, attempts=1, sending_since=now - dt.timedelta(seconds=200)
    )
    fresh = send(erp, key="order:SO2")
    OutboundMessage.objects.filter(pk=fresh.pk).update(status=Status.SENDING, attempts=1, sending_since=now)

    assert delivery.sending_sweep(now=now, lease_seconds=120) == 1

    message.refresh_from_db()
    fresh.refresh_from_db()
    assert message.status == Status.PENDING and message.next_attempt_at == now and message.attempts == 1
    assert message.attempt_log.get().outcome == OutboundAttempt.Outcome.LOST
    assert fresh.status == Status.SENDING


def test_a_late_success_after_the_sweeper_still_counts_as_delivered(erp, receiver):
    message = send(erp)
    OutboundMessage.objects.filter(pk=message.pk).update(status=Status.SENDING, attempts=1)
    message.refresh_from_db()
    from integrations.adapters import DeliveryResult

    OutboundMessage.objects.filter(pk=message.pk).update(status=Status.PENDING)  # the sweeper gave it back
    assert delivery.record_result(message=message, result=DeliveryResult(200), started=timezone.now()) == "delivered"
    message.refresh_from_db()
    assert message.status == Status.DELIVERED


def test_a_disabled_partner_holds_its_messages(erp):
    message = send(erp)
    erp.is_enabled = False
    erp.save()
    OutboundMessage.objects.update(claimed_until=None)

    assert delivery.message_deliver(message_id=message.pk) == "partner_disabled"
    assert delivery.due_messages_claim() == []


def test_the_tick_queues_nothing_more_while_a_full_batch_waits_in_the_broker(erp, settings):
    from portal.celery import app

    settings.OUTBOUND_QUEUE = queue = f"outbound-tick-test-{erp.pk}"
    settings.OUTBOUND_TICK_BATCH = 3
    send(erp, key="order:A"), send(erp, key="order:B")
    OutboundMessage.objects.update(claimed_until=None)
    with app.connection_for_write() as connection:
        client = connection.default_channel.client
        client.delete(queue)
        try:
            client.rpush(queue, *["{}"] * 3)  # three tasks already waiting

            assert delivery.outbound_tick() == {"swept": 0, "queued": 0, "waiting": 3}
            assert OutboundMessage.objects.filter(claimed_until__isnull=False).count() == 0

            client.delete(queue)
            assert delivery.queued_deliveries() == 0
        finally:
            client.delete(queue)
