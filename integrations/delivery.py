"""Delivering outbound messages: at least once, in order per ordering key, retries scheduled in the database.

The ``OutboundMessage`` row is the source of truth. A delivery task (queued on commit of
``message_send`` and by the tick) moves a due, unblocked row from *pending* to *sending*,
posts it through the partner's adapter outside any transaction, then records the outcome:

* 2xx → *delivered*, and the next message of the same ordering key is queued at once;
* network errors, timeouts, 408/409/425/429 and 5xx → back to *pending* with
  ``next_attempt_at`` = now + exponential backoff with jitter (``Retry-After`` wins on 429/503);
* any other 4xx → *dead* at once (a refusal does not improve by repetition);
* attempts used up → *dead*. A dead letter raises an ``integration_failure`` case for IT
  support and keeps blocking its ordering key until it is replayed or discarded.

The tick (Celery beat, every few seconds) re-queues rows stuck in *sending* past the lease
(the worker died mid-send) and claims due rows with ``FOR UPDATE SKIP LOCKED``. No task
ever waits in the broker with a countdown: a long countdown outlives Redis's visibility
timeout and is delivered twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integrations.adapters import DeliveryResult, adapter_for
from integrations.cases import integration_case_close, integration_case_raise
from integrations.models import OutboundAttempt, OutboundMessage, Partner
from integrations.outbound import claim_window, enqueue_delivery
from portal.actors import Actor

logger = logging.getLogger(__name__)

Status = OutboundMessage.Status
Outcome = OutboundAttempt.Outcome
DELIVERY_ACTOR = Actor.system("outbound-delivery")
RETRYABLE_CLIENT_ERRORS = {408, 409, 425, 429}
RETRY_AFTER_STATUSES = {429, 503}


def setting(name: str, default):
    return getattr(settings, name, default)


def backoff_seconds(attempt: int, *, rng: random.Random | None = None) -> float:
    """Delay before try `attempt + 1`: base·2^(attempt-1), capped, with jitter between half and all of it."""
    base = float(setting("OUTBOUND_BACKOFF_BASE_SECONDS", 2.0))
    cap = float(setting("OUTBOUND_BACKOFF_MAX_SECONDS", 900.0))
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + (rng or random).random() / 2)


def max_attempts_for(message: OutboundMessage) -> int:
    return message.partner.max_attempts or int(setting("OUTBOUND_MAX_ATTEMPTS", 8))


def classify(result: DeliveryResult) -> str:
    """delivered | retry | refused."""
    if result.delivered:
        return "delivered"
    code = result.status_code
    if code is not None and 400 <= code < 500 and code not in RETRYABLE_CLIENT_ERRORS:
        return "refused"
    return "retry"


def retry_delay(message: OutboundMessage, result: DeliveryResult) -> float:
    delay = backoff_seconds(message.attempts)
    if result.status_code in RETRY_AFTER_STATUSES and result.retry_after is not None:
        delay = min(result.retry_after, float(setting("OUTBOUND_RETRY_AFTER_MAX_SECONDS", 3600.0)))
    return delay


# --- ordering --------------------------------------------------------------------------


def blocker_of(message: OutboundMessage) -> OutboundMessage | None:
    """The earliest message holding this one back, for the monitor."""
    return (
        OutboundMessage.objects.filter(
            partner_id=message.partner_id,
            ordering_key=message.ordering_key,
            pk__lt=message.pk,
            status__in=OutboundMessage.BLOCKING,
        )
        .order_by("pk")
        .first()
    )


# --- one delivery ------------------------------------------------------------------------


CLAIM_SQL = """
WITH target AS (
  SELECT m.id, m.status, m.next_attempt_at <= %(now)s AS due, pa.is_enabled,
         COALESCE(pa.deliveries_paused_until > %(now)s, false) AS paused,
         EXISTS (SELECT 1 FROM integrations_outboundmessage p
                  WHERE p.partner_id = m.partner_id AND p.ordering_key = m.ordering_key AND p.id < m.id
                    AND p.status IN ('pending', 'sending', 'dead')) AS blocked
    FROM integrations_outboundmessage m JOIN integrations_partner pa ON pa.id = m.partner_id
   WHERE m.id = %(id)s
     FOR UPDATE OF m SKIP LOCKED
), released AS (
  UPDATE integrations_outboundmessage m SET claimed_until = NULL
    FROM target t WHERE m.id = t.id AND (t.blocked OR t.paused) AND m.claimed_until IS NOT NULL
), claimed AS (
  UPDATE integrations_outboundmessage m
     SET status = 'sending', sending_since = %(now)s, attempts = m.attempts + 1, claimed_until = NULL
    FROM target t
   WHERE m.id = t.id AND t.status = 'pending' AND t.due AND t.is_enabled AND NOT t.paused AND NOT t.blocked
  RETURNING m.id, m.partner_id, m.message_type, m.idempotency_key, m.ordering_key, m.payload::text, m.attempts,
            m.order_number, m.dead_at
)
SELECT t.status, t.due, t.is_enabled, t.paused, t.blocked, c.*, pa.code, pa.name, pa.kind, pa.webhook_secret,
       pa.outbound_base_url, pa.timeout_seconds, pa.max_attempts
  FROM target t LEFT JOIN claimed c ON c.id = t.id
  LEFT JOIN integrations_partner pa ON pa.id = c.partner_id
"""


def message_deliver(*, message_id: int, now: dt.datetime | None = None) -> str:
    """Try to deliver one message if it is due and unblocked; returns what happened in a word.

    The claim (pending → sending, attempt counted) is one statement: the row is locked with SKIP
    LOCKED, so a duplicate task for a row another worker holds returns at once.
    """
    started = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, {"id": message_id, "now": started})
        row = cursor.fetchone()
    if row is None:
        return "busy"  # another worker holds it, or it is gone
    status, due, partner_enabled, partner_paused, blocked, claimed_id = row[:6]
    if claimed_id is None:
        if status != Status.PENDING:
            return f"already_{status}"  # a duplicate task (the tick re-queued a slow one): harmless
        if not due:
            return "not_due"
        if not partner_enabled:
            return "partner_disabled"
        if partner_paused:
            return "partner_paused"  # the tick queues it once the pause is over
        return "waiting"  # the earlier message's delivery queues this one (or the tick does)
    message = _claimed_message(row[5:])
    result = adapter_for(message.partner.kind).send(message)
    return record_result(message=message, result=result, started=started)


def _claimed_message(values) -> OutboundMessage:
    (
        pk,
        partner_id,
        message_type,
        key,
        ordering_key,
        payload,
        attempts,
        order_number,
        dead_at,
        code,
        name,
        kind,
        secret,
        base_url,
        timeout,
        max_attempts,
    ) = values
    partner = Partner(
        pk=partner_id,
        code=code,
        name=name,
        kind=kind,
        webhook_secret=secret,
        outbound_base_url=base_url,
        timeout_seconds=timeout,
        max_attempts=max_attempts,
    )
    return OutboundMessage(
        pk=pk,
        partner=partner,
        message_type=message_type,
        idempotency_key=key,
        ordering_key=ordering_key,
        payload=json.loads(payload),
        attempts=attempts,
        order_number=order_number,
        dead_at=dead_at,
        status=Status.SENDING,
    )


DELIVERED_SQL = """
WITH done AS (
  UPDATE integrations_outboundmessage
     SET status = 'delivered', delivered_at = %(now)s, sending_since = NULL, claimed_until = NULL,
         last_status_code = %(code)s
   WHERE id = %(id)s AND status IN ('pending', 'sending', 'dead')
  RETURNING id, partner_id, ordering_key, dead_at
), attempt AS (
  INSERT INTO integrations_outboundattempt (message_id, number, started_at, duration_ms, status_code, outcome, error)
  VALUES (%(id)s, %(number)s, %(started)s, %(duration)s, %(code)s, 'delivered', '')
), follower AS (
  UPDATE integrations_outboundmessage f SET claimed_until = %(claim)s
   WHERE f.id = (SELECT n.id FROM integrations_outboundmessage n JOIN done d
                   ON n.partner_id = d.partner_id AND n.ordering_key = d.ordering_key AND n.id > d.id
                  WHERE n.status IN ('pending', 'sending', 'dead')
                  ORDER BY n.id LIMIT 1 FOR UPDATE OF n SKIP LOCKED)
     AND f.status = 'pending' AND f.next_attempt_at <= %(now)s
  RETURNING f.id
)
SELECT (SELECT id FROM done), (SELECT dead_at FROM done), (SELECT id FROM follower)
"""


def record_result(*, message: OutboundMessage, result: DeliveryResult, started: dt.datetime) -> str:
    """Write the outcome of attempt `message.attempts` (the row may have moved on meanwhile)."""
    if classify(result) == "delivered":
        return _record_delivered(message=message, result=result, started=started)
    return _record_failure(message=message, result=result, started=started)


def _record_delivered(*, message: OutboundMessage, result: DeliveryResult, started: dt.datetime) -> str:
    """One statement: mark delivered (even if the sweeper re-queued it meanwhile: the partner has it and
    a resend is deduplicated), log the attempt, and claim the next message of the same key."""
    now = timezone.now()
    params = {
        "id": message.pk,
        "now": now,
        "code": result.status_code,
        "number": message.attempts,
        "started": started,
        "duration": result.duration_ms,
        "claim": claim_window(now),
    }
    with connection.cursor() as cursor:
        cursor.execute(DELIVERED_SQL, params)
        delivered_id, dead_at, follower_id = cursor.fetchone()
    # on_commit: immediate in a worker (autocommit), after the caller's commit inside a transaction
    if delivered_id is not None and dead_at is not None:
        transaction.on_commit(lambda: _auto_resolve_case(message))  # a dead letter replayed from the monitor
    if follower_id is not None:
        transaction.on_commit(lambda: enqueue_delivery(follower_id))
    return Outcome.DELIVERED


def _record_failure(*, message: OutboundMessage, result: DeliveryResult, started: dt.datetime) -> str:
    attempt_number = message.attempts
    verdict = classify(result)
    now = timezone.now()
    with transaction.atomic():
        current = (
            OutboundMessage.objects.select_for_update(of=("self",), no_key=True)
            .select_related("partner")
            .get(pk=message.pk)
        )
        attempt = OutboundAttempt(
            message=current,
            number=attempt_number,
            started_at=started,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=result.error[:2000],
        )
        if current.status != Status.SENDING or current.attempts != attempt_number:
            attempt.outcome = Outcome.LOST  # a later attempt owns the row now; only the log keeps this one
        else:
            current.last_error = result.error[:2000]
            current.last_status_code = result.status_code
            current.sending_since = None
            if verdict == "refused" or current.attempts >= max_attempts_for(current):
                attempt.outcome = Outcome.REFUSED if verdict == "refused" else Outcome.DEAD
                _mark_dead(current, now=now)
            else:
                attempt.outcome = Outcome.RETRY
                current.status = Status.PENDING
                current.next_attempt_at = now + dt.timedelta(seconds=retry_delay(current, result))
                current.save(
                    update_fields=["status", "last_error", "last_status_code", "sending_since", "next_attempt_at"]
                )
        attempt.save()
    return attempt.outcome


def _mark_dead(message: OutboundMessage, *, now: dt.datetime) -> None:
    message.status = Status.DEAD
    message.dead_at = now
    message.claimed_until = None
    message.save(
        update_fields=["status", "dead_at", "claimed_until", "last_error", "last_status_code", "sending_since"]
    )
    raise_integration_failure(message)


def raise_integration_failure(message: OutboundMessage) -> None:
    """An integration-failure case for IT support, in the transaction that made the dead letter."""
    partner = message.partner
    integration_case_raise(
        subject=message,
        subject_label=message.subject_label,
        summary=(
            f"{message.message_type} to {partner.name or partner.code} failed after {message.attempts} "
            f"attempt(s): {message.last_error[:200] or 'no answer'}"
        ),
        context={
            "partner": partner.code,
            "partner_kind": partner.kind,
            "message_id": message.pk,
            "message_type": message.message_type,
            "ordering_key": message.ordering_key,
            "last_error": message.last_error[:1000],
            "last_status_code": message.last_status_code,
            "attempts": message.attempts,
        },
        actor=DELIVERY_ACTOR,
        reason="Outbound message became a dead letter",
        order_number=message.order_number,
    )


def _auto_resolve_case(message: OutboundMessage) -> None:
    """A dead letter that was later delivered (replayed from the monitor) no longer needs its case."""
    integration_case_close(subject=message, actor=DELIVERY_ACTOR, reason="The message was delivered")


# --- the tick ------------------------------------------------------------------------------


def sending_sweep(*, now: dt.datetime | None = None, lease_seconds: float | None = None) -> int:
    """Put rows stuck in *sending* past the lease back to *pending* (their worker died); returns how many."""
    now = now or timezone.now()
    lease = lease_seconds if lease_seconds is not None else float(setting("OUTBOUND_SENDING_LEASE_SECONDS", 120))
    cutoff = now - dt.timedelta(seconds=lease)
    swept = 0
    with transaction.atomic():
        stuck = list(
            OutboundMessage.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("partner")
            .filter(status=Status.SENDING, sending_since__lt=cutoff)
            .order_by("pk")[:1000]
        )
        attempts = []
        for message in stuck:
            attempts.append(
                OutboundAttempt(
                    message=message,
                    number=message.attempts,
                    started_at=message.sending_since,
                    outcome=Outcome.LOST,
                    error="No outcome within the sending lease (worker lost); re-queued",
                )
            )
            message.sending_since = None
            if message.attempts >= max_attempts_for(message):
                message.last_error = "Worker lost during the last attempt"
                _mark_dead(message, now=now)
                continue
            message.status = Status.PENDING
            message.next_attempt_at = now
            message.claimed_until = None
            message.save(update_fields=["status", "sending_since", "next_attempt_at", "claimed_until"])
            swept += 1
        OutboundAttempt.objects.bulk_create(attempts)
    if stuck:
        logger.warning("outbound rows re-queued after their sending lease", extra={"count": len(stuck)})
    return swept


DUE_SQL = """
SELECT m.id FROM integrations_outboundmessage m
  JOIN integrations_partner pa ON pa.id = m.partner_id AND pa.is_enabled
       AND (pa.deliveries_paused_until IS NULL OR pa.deliveries_paused_until <= %(now)s)
 WHERE m.status = 'pending' AND m.next_attempt_at <= %(now)s
   AND (m.claimed_until IS NULL OR m.claimed_until < %(now)s)
   AND NOT EXISTS (
     SELECT 1 FROM integrations_outboundmessage p
      WHERE p.partner_id = m.partner_id AND p.ordering_key = m.ordering_key AND p.id < m.id
        AND p.status IN ('pending', 'sending', 'dead'))
 ORDER BY m.next_attempt_at, m.id
 LIMIT %(limit)s
 FOR UPDATE OF m SKIP LOCKED
"""


def due_messages_claim(*, now: dt.datetime | None = None, limit: int | None = None) -> list[int]:
    """Claim due, unblocked pending rows (SKIP LOCKED: ticks and workers never wait on each other)."""
    now = now or timezone.now()
    limit = limit or int(setting("OUTBOUND_TICK_BATCH", 500))
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(DUE_SQL, {"now": now, "limit": limit})
            ids = [row[0] for row in cursor.fetchall()]
        if ids:
            OutboundMessage.objects.filter(pk__in=ids).update(claimed_until=claim_window(now))
    return ids


def queued_deliveries() -> int:
    """How many delivery tasks wait in the broker (0 when it cannot tell)."""
    from portal.celery import app

    try:
        with app.connection_for_read() as connection:
            declared = connection.default_channel.queue_declare(queue=settings.OUTBOUND_QUEUE, passive=True)
            return int(declared.message_count)
    except Exception:
        return 0


def outbound_tick(*, now: dt.datetime | None = None) -> dict[str, int]:
    """The beat's few-seconds job: sweep expired leases, then queue what is due.

    While a full batch of tasks still waits in the broker the tick queues nothing more: under a
    backlog longer than the claim window it would otherwise re-queue rows whose task is merely slow.
    """
    swept = sending_sweep(now=now)
    waiting = queued_deliveries()
    if waiting >= int(setting("OUTBOUND_TICK_BATCH", 500)):
        return {"swept": swept, "queued": 0, "waiting": waiting}
    ids = due_messages_claim(now=now)
    for message_id in ids:
        enqueue_delivery(message_id)
    return {"swept": swept, "queued": len(ids), "waiting": waiting}
