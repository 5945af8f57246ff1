"""Inbound partner events: accepted once, stored first, processed in order per subject.

The WMS, WCS and TMS report the floor and the carriers; the ERP announces deliveries and reports invoices
and customers' credit.

Flow::

    POST /api/v1/events ──► event_accept: one InboundEvent row (unique per partner + event id)
                              └─ on commit: inbound task for the event's subject
    worker ──► events_process_subjects: lock the first pending events of each subject it was
               given (FOR UPDATE SKIP LOCKED), keeping a subject only if its head came with
               them; runs of plain stock arrivals from the heads are settled together in one
               transaction (``batch_handler``); any other head goes to
               events_process_subject: run its handler in a savepoint, mark it processed /
               ignored / failed, commit; repeat until the subject has nothing due.

Ordering: a subject is only ever taken by claiming its head (its oldest pending event), and
the head stays pending — and locked — until its handler's work commits, so two workers never
run events of one subject at once and a later event never overtakes an earlier one. A
worker killed mid-event rolls back; the row is still pending and the sweep
(``events_process_due``, every few seconds under beat) picks it up again.

Handlers are registered per event type with ``register_event_handler(type, handler)``;
a handler gets the ``InboundEvent`` (``.type``, ``.payload``, ``.partner``,
``.occurred_at``, ``.event_id``), calls core services with ``Actor.partner(code)`` and
raises ``DomainError`` to refuse: the event is then *failed* with the message and an
``integration_failure`` case is raised. A handler may return an object whose
``applied`` is False (a stale or repeated confirmation): the event is *ignored*, with
the note. A handler that needs an event still queued under another subject (a receipt's
close waits for the arrivals sent before it) raises ``Deferred``: the event stays pending
and is tried again with backoff. An unexpected error is retried with backoff, then failed
the same way (as is a deferral that outlasts the tries).

Event types handled here (automation registers ``equipment.status`` and ``wcs.*``):

    task.acknowledged  {task_id, instruction_seq?, note?}
    task.started       {task_id, instruction_seq?, note?}
    task.completed     {task_id, done_quantity?, instruction_seq?, note?}
    task.short         {task_id, done_quantity, instruction_seq?, note?}
    stock.received     {sku, warehouse, location, quantity, lot?, receipt?, receipt_line?, note?}
    count.recorded     {count_id, counted_quantity, note?}
                       or {sku, warehouse, location, counted_quantity, lot?, note?}
    shipment.packed    {order, packages?, note?}
    shipment.shipped   {order, shipment?, carrier, tracking_number, note?}
    shipment.delivered {order, shipment, note?}                                   (TMS only)
    receipt.expected   {receipt, warehouse, supplier, purchase_order?, kind?, dock?,
                        lines: [{sku, expected_quantity, lot?}], note?}           (ERP, EDI)
    receipt.closed     {receipt, note?}                                           (WMS only)
    order.invoiced     {order, invoice, note?}                                    (ERP only)
    customer.credit    {customer, open_balance, credit_limit?, credit_status?, note?}  (ERP only)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import serializers

from integrations.cases import integration_case_close, integration_case_raise
from integrations.models import InboundEvent, Partner
from integrations.services import require_fixer
from portal.actors import Actor
from portal.db import savepoint_if_nested
from portal.domain import DomainError, InvalidInput, NotFound, require_reason
from portal.events import emit

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
PROCESSOR = Actor.system("inbound-events")
BIGINT_MAX = 2**63 - 1


# --- the registry ----------------------------------------------------------------------


@dataclass(frozen=True)
class EventHandler:
    """What the portal does with one event type: the handler, its subject and (optionally) its payload check."""

    event_type: str
    handler: Callable[[Any], Any]
    subject: Callable[[dict], str] | None = None
    payload_serializer: type[serializers.Serializer] | None = None
    batch_handler: Callable[[list], list] | None = None
    batchable: Callable[[dict], bool] | None = None
    partner_kinds: tuple[str, ...] = ()  # who may post it (empty: any partner with the events scope)

    def takes_in_batch(self, payload: dict) -> bool:
        return self.batch_handler is not None and (self.batchable is None or self.batchable(payload))


_handlers: dict[str, EventHandler] = {}


def register_event_handler(
    event_type: str,
    handler: Callable[[Any], Any],
    *,
    subject: Callable[[dict], str] | None = None,
    payload_serializer: type[serializers.Serializer] | None = None,
    batch_handler: Callable[[list], list] | None = None,
    batchable: Callable[[dict], bool] | None = None,
    partner_kinds: tuple[str, ...] = (),
) -> None:
    """Handle events of `event_type` with `handler(event)` (replaces an earlier registration of that type).

    `subject(payload) -> str` names what the event is about (events of one subject run in
    order); without it the subject is derived from the payload (order, task, equipment …).
    `payload_serializer` checks the payload when the event is posted: a bad payload is
    refused with 422 and never stored. `batch_handler(events)` settles many events of the
    type at once (those whose payload `batchable` accepts): it returns, per event and in order,
    an ``Outcome`` or the ``DomainError`` that refuses that event alone. `partner_kinds` limits
    who may post the type (an invoice or a customer's balance comes from the ERP alone).
    """
    _handlers[event_type] = EventHandler(
        event_type, handler, subject, payload_serializer, batch_handler, batchable, tuple(partner_kinds)
    )


def handler_for(event_type: str) -> EventHandler | None:
    return _handlers.get(event_type)


def event_types() -> list[str]:
    return sorted(_handlers)


class Deferred(DomainError):
    """A handler's "not yet": what the event needs is still on its way in another subject's queue. The event stays
    pending and is tried again with backoff (it fails, with this message, after MAX_ATTEMPTS tries)."""

    code = "deferred"


@dataclass(frozen=True)
class Outcome:
    """A handler's result: applied, or ignored with the reason (already done, stale)."""

    applied: bool
    note: str = ""


# --- subjects --------------------------------------------------------------------------


def _bounded(key: str) -> str:
    if len(key) <= 100:
        return key
    return key[:59] + "#" + hashlib.sha256(key.encode()).hexdigest()[:40]


def _int_or_none(value) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 0 < number <= BIGINT_MAX else None


def task_orders(task_ids) -> dict[int, str]:
    """Order number per task id, for the tasks that have an order (one query for a whole batch)."""
    from orchestration.models import Task

    ids = {task_id for task_id in map(_int_or_none, task_ids) if task_id is not None}
    if not ids:
        return {}
    return dict(Task.objects.filter(pk__in=ids, order__isnull=False).values_list("pk", "order__number"))


def _task_subject(payload: dict, orders: dict[int, str] | None) -> tuple[str, str]:
    """Events about a task run in order with every other event of its order (picks, pack, ship)."""
    task_id = _int_or_none(payload.get("task_id"))
    if task_id is None:
        return f"task:{payload.get('task_id')!s}", ""
    number = (task_orders([task_id]) if orders is None else orders).get(task_id)
    return (f"order:{number}", number) if number else (f"task:{task_id}", "")


def subject_of(
    event_type: str, payload: dict, event_id: str, *, orders: dict[int, str] | None = None
) -> tuple[str, str]:
    """(subject key, order number) of an event: the ordering unit and the order it concerns, if any.

    `orders` (from ``task_orders``) spares a query per task event when a batch was looked up at once.
    """
    registered = handler_for(event_type)
    if registered and registered.subject:
        return _bounded(registered.subject(payload)), ""
    if "task_id" in payload:
        key, number = _task_subject(payload, orders)
        return _bounded(key), number
    order = payload.get("order")
    if isinstance(order, str) and order:
        return _bounded(f"order:{order}"), order[:40]
    for field in ("equipment", "equipment_code"):
        if isinstance(payload.get(field), str) and payload[field]:
            return _bounded(f"equipment:{payload[field]}"), ""
    if isinstance(payload.get("count_id"), int):
        return f"count:{payload['count_id']}", ""
    if isinstance(payload.get("sku"), str):
        return _bounded(f"stock:{payload.get('warehouse', '')}:{payload['sku']}"), ""
    return _bounded(f"event:{event_id}"), ""


# --- accepting an event ----------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    event: InboundEvent
    duplicate: bool


def _checked_event(
    partner: Partner,
    event_type: str,
    payload: dict,
    event_id: str,
    *,
    prefix: str = "",
    orders: dict[int, str] | None = None,
) -> tuple[str, str]:
    """Refuse an unknown type, one this partner may not post, or a bad payload (422, fields under `prefix`);
    returns (subject key, order number)."""
    registered = handler_for(event_type)
    if registered is None:
        raise InvalidInput(
            f"Unknown event type {event_type!r}.",
            code="unknown_event_type",
            fields={f"{prefix}type": [f"One of: {', '.join(event_types())}."]},
        )
    if registered.partner_kinds and partner.kind not in registered.partner_kinds:
        kinds = " or ".join(kind.upper() for kind in registered.partner_kinds)
        raise InvalidInput(
            f"{event_type} events come from the {kinds} alone; {partner.code} is a {partner.kind.upper()}.",
            code="event_type_not_allowed",
            fields={f"{prefix}type": [f"Only a {kinds} partner may post {event_type}."]},
        )
    if registered.payload_serializer is not None:
        checked = registered.payload_serializer(data=payload)
        if not checked.is_valid():
            from portal.api import flatten_field_errors

            raise InvalidInput(
                f"The payload of a {event_type} event has invalid values.",
                fields=flatten_field_errors(checked.errors, f"{prefix}payload"),
            )
    return subject_of(event_type, payload, event_id, orders=orders)


def event_accept(
    *, partner: Partner, event_id: str, event_type: str, occurred_at: dt.datetime, payload: dict
) -> Accepted:
    """Store a partner's event once (a repeated event id is counted and ignored); process it after commit."""
    subject_key, order_number = _checked_event(partner, event_type, payload, event_id)
    event = InboundEvent(
        partner=partner,
        event_id=event_id,
        type=event_type,
        subject_key=subject_key,
        occurred_at=occurred_at,
        payload=payload,
        order_number=order_number,
    )
    try:
        with savepoint_if_nested():
            event.save(force_insert=True)
    except IntegrityError:
        existing = InboundEvent.objects.get(partner=partner, event_id=event_id)
        InboundEvent.objects.filter(pk=existing.pk).update(duplicates=F("duplicates") + 1)
        return Accepted(existing, duplicate=True)
    transaction.on_commit(lambda: enqueue_subject(subject_key))
    return Accepted(event, duplicate=False)


def events_accept_many(*, partner: Partner, events: list[dict]) -> list[Accepted]:
    """Store a batch of a partner's events (dicts of event_id, type, occurred_at, payload) in one transaction.

    All or nothing: one event with an unknown type or a bad payload refuses the whole batch
    (422, fields named ``events.<i>.…``) and stores none. Events already received — earlier, or
    earlier in this batch — are counted as duplicates and not stored again. Each subject with
    new events is handed to a worker once, after commit; the batch's order is kept per subject.
    """
    rows = []
    orders = task_orders(item["payload"].get("task_id") for item in events if "task_id" in item["payload"])
    for index, item in enumerate(events):
        subject_key, order_number = _checked_event(
            partner, item["type"], item["payload"], item["event_id"], prefix=f"events.{index}.", orders=orders
        )
        rows.append(
            InboundEvent(
                partner=partner,
                event_id=item["event_id"],
                type=item["type"],
                subject_key=subject_key,
                occurred_at=item["occurred_at"],
                payload=item["payload"],
                order_number=order_number,
            )
        )
    ids = [row.event_id for row in rows]
    with transaction.atomic():
        known = set(InboundEvent.objects.filter(partner=partner, event_id__in=ids).values_list("event_id", flat=True))
        fresh, fresh_ids = [], set()
        for row in rows:
            if row.event_id not in known and row.event_id not in fresh_ids:
                fresh_ids.add(row.event_id)
                fresh.append(row)
        # A copy that another request stores meanwhile is skipped here rather than refused.
        InboundEvent.objects.bulk_create(fresh, ignore_conflicts=True)
        repeats = Counter(ids)
        for event_id in fresh_ids:
            repeats[event_id] -= 1
        for event_id, times in repeats.items():
            if times > 0:
                InboundEvent.objects.filter(partner=partner, event_id=event_id).update(
                    duplicates=F("duplicates") + times
                )
        stored = {event.event_id: event for event in InboundEvent.objects.filter(partner=partner, event_id__in=ids)}
        subjects = list(dict.fromkeys(row.subject_key for row in fresh))
        transaction.on_commit(lambda: enqueue_subjects(subjects))
    accepted, answered = [], set()
    for event_id in ids:
        accepted.append(Accepted(stored[event_id], duplicate=event_id not in fresh_ids or event_id in answered))
        answered.add(event_id)
    return accepted


def enqueue_subject(subject_key: str) -> None:
    """Hand one subject to a worker; on a broker outage the sweep picks the event up later."""
    enqueue_subjects([subject_key])


SUBJECTS_PER_TASK = 25  # a batch's subjects go to the workers in tasks of this many, so several workers share it


def enqueue_subjects(subject_keys: list[str]) -> None:
    """Hand a batch's subjects to workers, a few tasks for all of them rather than one task each."""
    from django.conf import settings

    from integrations.inbound_tasks import process_inbound_subjects

    for start in range(0, len(subject_keys), SUBJECTS_PER_TASK):
        chunk = subject_keys[start : start + SUBJECTS_PER_TASK]
        try:
            process_inbound_subjects.apply_async([chunk], queue=settings.INBOUND_QUEUE)
        except Exception:
            logger.warning("inbound events not queued; the sweep will process them", extra={"subjects": chunk})


# What a person may do to an event from its page: replay one that failed or was given up on, give up on a failed one.
REPLAYABLE_EVENTS = (InboundEvent.Status.FAILED, InboundEvent.Status.IGNORED)
DISCARDABLE_EVENTS = (InboundEvent.Status.FAILED,)


def inbound_event_replay(*, event: InboundEvent, actor: Actor, reason: str) -> InboundEvent:
    """Put a failed or ignored event back in its subject's queue (after the cause was fixed)."""
    require_fixer(actor)
    require_reason(reason)
    with transaction.atomic():
        event = (
            InboundEvent.objects.select_for_update(no_key=True, of=("self",)).select_related("partner").get(pk=event.pk)
        )
        if event.status == InboundEvent.Status.PENDING:
            return event
        if event.status == InboundEvent.Status.PROCESSED:
            raise DomainError(f"Event {event.event_id} was processed already; replaying it would apply it twice.")
        previous = event.status
        event.status = InboundEvent.Status.PENDING
        event.next_attempt_at = None
        event.last_error = f"Replayed by {actor.label}: {reason}"
        event.save(update_fields=["status", "next_attempt_at", "last_error"])
        _record(event, "inbound_event.replayed", actor=actor, reason=reason, previous=previous)
        subject_key = event.subject_key
        transaction.on_commit(lambda: enqueue_subject(subject_key))
    return event


def inbound_event_discard(*, event: InboundEvent, actor: Actor, reason: str) -> InboundEvent:
    """Give up on a failed event on purpose: it is marked ignored, and its subject's later events may go."""
    require_fixer(actor)
    require_reason(reason)
    with transaction.atomic():
        event = (
            InboundEvent.objects.select_for_update(no_key=True, of=("self",)).select_related("partner").get(pk=event.pk)
        )
        if event.status == InboundEvent.Status.PROCESSED:
            raise DomainError(f"Event {event.event_id} was processed already; there is nothing to discard.")
        if event.status == InboundEvent.Status.IGNORED:
            return event
        previous = event.status
        event.status = InboundEvent.Status.IGNORED
        event.next_attempt_at = None
        event.last_error = f"Discarded by {actor.label}: {reason}"
        event.save(update_fields=["status", "next_attempt_at", "last_error"])
        _record(event, "inbound_event.discarded", actor=actor, reason=reason, previous=previous)
        _close_case(event, actor=actor, reason=f"The event was discarded: {reason}")
        subject_key = event.subject_key
        transaction.on_commit(lambda: enqueue_subject(subject_key))
    return event


def _record(event: InboundEvent, name: str, *, actor: Actor, reason: str, previous: str) -> None:
    """A person's replay or discard of a partner event, kept as a domain event (who, when, why, from what)."""
    emit(
        name,
        subject=event,
        actor=actor,
        reason=reason,
        payload={
            "event_id": event.event_id,
            "type": event.type,
            "partner": event.partner.code,
            "previous_status": previous,
            "order": event.order_number,
        },
    )


# --- processing ------------------------------------------------------------------------

DUE_HEADS_SQL = """
SELECT subject_key FROM (
    SELECT DISTINCT ON (subject_key) subject_key, id, next_attempt_at, received_at
    FROM integrations_inboundevent WHERE status = 'pending' ORDER BY subject_key, id
) heads
WHERE (next_attempt_at IS NULL OR next_attempt_at <= %s) AND received_at <= %s
ORDER BY id LIMIT %s
"""


def _backoff(attempts: int) -> dt.timedelta:
    return dt.timedelta(seconds=min(300, 2 ** (attempts + 1)))


def _raise_case(event: InboundEvent, error: str) -> None:
    """An integration-failure case for IT support about a partner event that failed for good."""
    integration_case_raise(
        subject=event,
        subject_label=f"{event.partner.code} event {event.event_id}",
        summary=f"Inbound {event.type} from {event.partner.code} failed: {error}",
        context={
            "direction": "inbound",
            "partner": event.partner.code,
            "event_id": event.event_id,
            "event_type": event.type,
            "inbound_event_id": event.pk,
            "error": error,
            "attempts": event.attempts,
        },
        actor=PROCESSOR,
        reason=f"Inbound event {event.event_id} failed",
        order_number=event.order_number,
    )


def _close_case(event: InboundEvent, *, actor: Actor, reason: str) -> None:
    """The event's integration-failure case, if one is open, is over: the event went through or was discarded."""
    integration_case_close(subject=event, actor=actor, reason=reason)


def _settle_case(event: InboundEvent, error: str) -> None:
    """After an attempt: a failure raises (or adds to) the event's case; an event that was tried before and is
    now settled, applied or found to have nothing left to apply, closes the case it may have."""
    if event.status == InboundEvent.Status.FAILED:
        _raise_case(event, error)
    elif event.attempts > 1 and event.status == InboundEvent.Status.PROCESSED:  # replayed or retried
        _close_case(event, actor=PROCESSOR, reason="The event was processed")
    elif event.attempts > 1 and event.status == InboundEvent.Status.IGNORED:
        _close_case(event, actor=PROCESSOR, reason=f"The event had nothing left to apply: {event.last_error}")


def _refusal(refused: DomainError) -> str:
    """A refusal as the event's error: the message, then the fields it names."""
    error = refused.message
    if refused.fields:
        error += " " + "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in refused.fields.items())
    return error


def _apply(event: InboundEvent, now: dt.datetime) -> None:
    """Run the handler in a savepoint and record the outcome on the (locked) event row."""
    registered = handler_for(event.type)
    event.attempts += 1
    event.next_attempt_at = None
    error = ""
    try:
        if registered is None:
            raise DomainError(f"No handler is registered for {event.type!r} events.", code="unknown_event_type")
        with transaction.atomic():
            result = registered.handler(event)
        if getattr(result, "applied", True) is False:
            event.status = InboundEvent.Status.IGNORED
            event.last_error = str(getattr(result, "note", ""))[:2000]
        else:
            event.status = InboundEvent.Status.PROCESSED
            event.last_error = ""
    except Deferred as waiting:
        error = waiting.message
        if event.attempts >= MAX_ATTEMPTS:
            event.status = InboundEvent.Status.FAILED
        else:
            event.next_attempt_at = now + _backoff(event.attempts)
    except DomainError as refused:
        event.status = InboundEvent.Status.FAILED
        error = _refusal(refused)
    except Exception as unexpected:  # the savepoint rolled the handler's writes back
        logger.exception("inbound event handler error", extra={"event": event.event_id, "type": event.type})
        error = f"{type(unexpected).__name__}: {unexpected}"
        if event.attempts >= MAX_ATTEMPTS:
            event.status = InboundEvent.Status.FAILED
        else:
            event.next_attempt_at = now + _backoff(event.attempts)
    if error:
        event.last_error = error[:2000]
    event.processed_at = now if event.status != InboundEvent.Status.PENDING else None
    event.save(update_fields=["status", "attempts", "next_attempt_at", "last_error", "processed_at", "order_number"])
    _settle_case(event, error)


_EVENT_COLUMNS = [field.column for field in InboundEvent._meta.concrete_fields]
_EVENT_FIELDS = [field.attname for field in InboundEvent._meta.concrete_fields]
_EVENT_CONVERTED = [
    (index, field) for index, field in enumerate(InboundEvent._meta.concrete_fields) if hasattr(field, "from_db_value")
]
CLAIM_HEAD_SQL = f"""
SELECT {", ".join(f"e.{column}" for column in _EVENT_COLUMNS)}, p.code,
       EXISTS (SELECT 1 FROM integrations_inboundevent later
               WHERE later.subject_key = e.subject_key AND later.status = 'pending' AND later.id > e.id)
FROM integrations_inboundevent e JOIN integrations_partner p ON p.id = e.partner_id
WHERE e.id = (SELECT id FROM integrations_inboundevent
              WHERE subject_key = %s AND status = 'pending' ORDER BY id LIMIT 1)
  AND e.status = 'pending' AND (e.next_attempt_at IS NULL OR e.next_attempt_at <= %s)
FOR UPDATE OF e SKIP LOCKED
"""


def _claim_head(subject_key: str, now: dt.datetime) -> tuple[InboundEvent | None, bool]:
    """Lock the subject's oldest pending event if it is due and no other worker holds it (one query).

    Only the head is ever a candidate: when it is locked elsewhere SKIP LOCKED yields
    nothing, so a later event of the subject can never be taken out of turn. (Plain SQL: the
    worker runs it once per event, and building the same ORM query each time cost more than
    running it.) The event's partner comes with its code; its other fields load if asked for.
    Returns the event and whether later events of the subject were pending when it was claimed
    (one that arrives afterwards brings its own task).
    """
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_HEAD_SQL, [subject_key, now])
        row = cursor.fetchone()
    if row is None:
        return None, False
    return _event_from_row(row), row[-1]


def _event_from_row(row) -> InboundEvent:
    """An event from a claim's row: its columns, then its partner's code (what the ORM's compiler would do)."""
    values = list(row[: len(_EVENT_COLUMNS)])
    for index, field in _EVENT_CONVERTED:  # JSON text → Python
        values[index] = field.from_db_value(values[index], None, connection)
    event = InboundEvent.from_db(connection.alias, _EVENT_FIELDS, values)
    event.partner = Partner.from_db(connection.alias, ["id", "code"], [event.partner_id, row[len(_EVENT_COLUMNS)]])
    return event


def event_process_next(*, subject_key: str, now: dt.datetime | None = None) -> InboundEvent | None:
    """Process the oldest pending event of `subject_key` if it is due and no one else holds it."""
    now = now or timezone.now()
    with transaction.atomic():
        event, _later_pending = _claim_head(subject_key, now)
        if event is not None:
            _apply(event, now)
    return event


def events_process_subject(
    *, subject_key: str, limit: int = 500, batch: int = 1, now: dt.datetime | None = None
) -> int:
    """Drain one subject in order; returns how many events were settled.

    Each event commits on its own by default (batch=1). Several events of one subject in one
    transaction would hold the stock rows of different order lines at once, taken in event
    order rather than the fixed primary-key order every other writer uses, and deadlock with
    allocations under load. Per-subject order does not need the batch: only the subject's
    oldest pending event can ever be claimed. A batch > 1 is for subjects whose handlers lock
    nothing shared.
    """
    done = 0
    while done < limit:
        settled, later_pending, stalled = _settle_batch(subject_key, batch=batch, now=now)
        done += settled
        if stalled:
            break
        # The claim said nothing later was pending. An event stored since may have had its task
        # turned away while this one held the head: one plain read after the commit catches it.
        if not later_pending and not _pending_subjects([subject_key]):
            break
    return done


def _settle_batch(subject_key: str, *, batch: int, now: dt.datetime | None) -> tuple[int, bool, bool]:
    """Settle up to `batch` head events in one transaction: (settled, later events pending, stalled).

    Stalled: no head could be claimed (none pending, not yet due, held by another worker) or
    the head stays pending for a retry, so later events must wait.
    """
    settled = 0
    later_pending = False
    started = time.monotonic()
    with transaction.atomic():
        while settled < batch and time.monotonic() - started < 0.5:
            event, later_pending = _claim_head(subject_key, now or timezone.now())
            if event is None:
                return settled, False, True
            _apply(event, now or timezone.now())
            if event.status == InboundEvent.Status.PENDING:
                return settled, False, True
            settled += 1
            if not later_pending:
                break
    return settled, later_pending, False


RUN_LENGTH = 20  # events of one subject a round may settle together in a batch
# The heads are locked first (SKIP LOCKED), and then only the runs of the subjects whose head
# this worker now holds: it never locks a subject's later events while another worker holds
# the head, and so never keeps them from that worker's next round after leaving the subject to it.
CLAIM_RUNS_SQL = f"""
WITH head AS MATERIALIZED (
    SELECT (SELECT id FROM integrations_inboundevent
            WHERE subject_key = subject.key AND status = 'pending' ORDER BY id LIMIT 1) AS id
    FROM unnest(%s::varchar[]) AS subject(key)
),
held AS MATERIALIZED (
    SELECT e.subject_key
    FROM head JOIN integrations_inboundevent e ON e.id = head.id
    WHERE e.status = 'pending'
    ORDER BY e.id
    FOR UPDATE OF e SKIP LOCKED
)
SELECT {", ".join(f"e.{column}" for column in _EVENT_COLUMNS)}, p.code, queued.position
FROM integrations_inboundevent e
JOIN integrations_partner p ON p.id = e.partner_id
JOIN (
    SELECT pending.id, row_number() OVER (PARTITION BY held.subject_key ORDER BY pending.id) AS position
    FROM held
    CROSS JOIN LATERAL (SELECT id FROM integrations_inboundevent
                        WHERE subject_key = held.subject_key AND status = 'pending' ORDER BY id LIMIT %s) pending
) queued ON queued.id = e.id
WHERE e.status = 'pending'
ORDER BY e.id
FOR UPDATE OF e SKIP LOCKED
"""


def events_process_subjects(*, subject_keys: list[str], limit: int = 2000, now: dt.datetime | None = None) -> int:
    """Drain several subjects, each in order; returns how many events were settled.

    Each round claims the first pending events of every subject in one statement. Where a
    subject's head is of a type settled in batches (a plain stock arrival), the run of such
    events from its head is settled together with the other subjects' runs: one transaction,
    the handler's rows locked in primary-key order, one UPDATE recording the outcomes. A
    subject whose head is any other event drains one event per transaction
    (``events_process_subject``), and so do the subjects of a batch whose handler broke. A
    subject whose head another worker holds is that worker's; one whose head waits for a
    retry is the sweep's.
    """
    subjects = list(dict.fromkeys(subject_keys))
    done = 0
    while subjects and done < limit:
        settled, alone, batched, deferred = _settle_runs(subjects, now)
        done += settled
        for subject_key in alone:
            done += events_process_subject(subject_key=subject_key, now=now)
        # Events stored while the runs were held had their own tasks turned away: look once more.
        subjects = deferred + _pending_subjects(batched)
    return done


def _settle_runs(subjects: list[str], now: dt.datetime | None) -> tuple[int, list[str], list[str], list[str]]:
    """One round over `subjects`: (events settled, subjects to drain alone, subjects batched, subjects deferred).

    One batch type per transaction, so every lock a batch handler takes is in its own fixed
    order; subjects whose run is of another batch type wait for the next round.
    """
    now = now or timezone.now()
    alone, deferred = [], []
    runs: dict[str, list[InboundEvent]] = {}
    batch_type = None
    with transaction.atomic():
        for subject_key, run in _claim_runs(subjects, now).items():
            registered = handler_for(run[0].type)
            if registered is None or not registered.takes_in_batch(run[0].payload):
                alone.append(subject_key)
            elif batch_type in (None, run[0].type):
                batch_type = run[0].type
                runs[subject_key] = _batchable_prefix(run, registered)
            else:
                deferred.append(subject_key)
        events = [event for run in runs.values() for event in run]
        if events and not _apply_batch(handler_for(batch_type), events, now):
            alone.extend(runs)  # one event per transaction after this one commits, as any other event
            events, runs = [], {}
    return len(events), alone, list(runs), deferred


def _claim_runs(subjects: list[str], now: dt.datetime) -> dict[str, list[InboundEvent]]:
    """Lock the heads of the subjects, then the first pending events of those whose head this worker holds,
    keeping per subject only the unbroken run from its head (one query).

    Only a run that starts at the head counts, and only while its head is due: when another
    worker holds the head (SKIP LOCKED leaves it out) the subject is left alone entirely, its
    later events untouched, so none is ever taken out of turn or held back from the worker
    that has the subject.
    """
    with connection.cursor() as cursor:
        cursor.execute(CLAIM_RUNS_SQL, [subjects, RUN_LENGTH])
        rows = cursor.fetchall()
    runs: dict[str, list[InboundEvent]] = {}
    for row in rows:
        event = _event_from_row(row)
        run = runs.setdefault(event.subject_key, [])
        if row[-1] == len(run) + 1:  # its position in the subject's queue: the run is unbroken
            run.append(event)
    return {
        subject_key: run
        for subject_key, run in runs.items()
        if run and (run[0].next_attempt_at is None or run[0].next_attempt_at <= now)
    }


def _batchable_prefix(run: list[InboundEvent], registered: EventHandler) -> list[InboundEvent]:
    """The head and the events after it of the same type and partner that the type's batch handler takes."""
    head = run[0]
    prefix = [head]
    for event in run[1:]:
        if (
            event.type != head.type
            or event.partner_id != head.partner_id
            or not registered.takes_in_batch(event.payload)
        ):
            break
        prefix.append(event)
    return prefix


def _apply_batch(registered: EventHandler, events: list[InboundEvent], now: dt.datetime) -> bool:
    """Settle claimed events of one type together; False (nothing changed) if the batch handler broke."""
    try:
        with transaction.atomic():
            outcomes = registered.batch_handler(events)
            if len(outcomes) != len(events):
                raise RuntimeError(f"{registered.event_type} batch handler answered {len(outcomes)} of {len(events)}")
    except Exception:
        logger.exception("inbound batch handler error; settling one by one", extra={"type": registered.event_type})
        return False
    for event, outcome in zip(events, outcomes, strict=True):
        event.attempts += 1
        event.next_attempt_at = None
        event.processed_at = now
        if isinstance(outcome, DomainError):
            event.status = InboundEvent.Status.FAILED
            event.last_error = _refusal(outcome)[:2000]
        elif outcome.applied:
            event.status, event.last_error = InboundEvent.Status.PROCESSED, ""
        else:
            event.status, event.last_error = InboundEvent.Status.IGNORED, outcome.note[:2000]
    _record_outcomes(events)
    for event in events:
        _settle_case(event, event.last_error)
    return True


def _record_outcomes(events: list[InboundEvent]) -> None:
    """Each settled event's status, attempts, error and time in one UPDATE."""
    rows = ", ".join(["(%s::bigint, %s::varchar, %s::integer, %s::text, %s::timestamptz)"] * len(events))
    params: list = []
    for event in events:
        params.extend([event.pk, event.status, event.attempts, event.last_error, event.processed_at])
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE integrations_inboundevent AS e SET status = v.status, attempts = v.attempts, "
            "next_attempt_at = NULL, last_error = v.last_error, processed_at = v.processed_at "
            f"FROM (VALUES {rows}) AS v(id, status, attempts, last_error, processed_at) WHERE e.id = v.id",
            params,
        )


def _pending_subjects(subjects: list[str]) -> list[str]:
    """Which of `subjects` still have pending events (one read)."""
    if not subjects:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT subject_key FROM integrations_inboundevent WHERE subject_key = ANY(%s) AND status = 'pending'",
            [subjects],
        )
        return [row[0] for row in cursor.fetchall()]


def events_process_due(*, now: dt.datetime | None = None, older_than_seconds: float = 5, limit: int = 200) -> int:
    """The sweep: every subject whose head is due (a lost task, a retry after an error) is drained."""
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(DUE_HEADS_SQL, [now, now - dt.timedelta(seconds=older_than_seconds), limit])
        subjects = [row[0] for row in cursor.fetchall()]
    return events_process_subjects(subject_keys=subjects, now=now)


# --- handlers for WMS / TMS events ------------------------------------------------------


def _actor(event) -> Actor:
    partner = getattr(event, "partner", None)
    return Actor.partner(getattr(partner, "code", None) or str(partner or "partner"))


def _reason(event, default: str) -> str:
    note = (event.payload or {}).get("note")
    label = getattr(getattr(event, "partner", None), "code", "partner")
    return f"{default} ({label}: {note})" if isinstance(note, str) and note.strip() else f"{default} ({label})"


class TaskPayload(serializers.Serializer):
    task_id = serializers.IntegerField(min_value=1, max_value=BIGINT_MAX)
    instruction_seq = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, allow_null=True)
    done_quantity = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False, allow_null=True)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


class ShortPayload(TaskPayload):
    done_quantity = serializers.IntegerField(min_value=0, max_value=2**31 - 1)


def handle_task_event(event) -> Outcome:
    """A WMS confirmation for a task: acknowledged, started, completed or short."""
    from orchestration import services as orchestration
    from orchestration.models import Task

    payload = event.payload
    what = event.type.rsplit(".", 1)[-1]
    actor = _actor(event)
    task = Task.objects.filter(pk=_int_or_none(payload.get("task_id"))).first()
    if task is None:
        raise NotFound(f"Task {payload.get('task_id')!r} does not exist.", fields={"payload.task_id": ["Unknown."]})
    seq = payload.get("instruction_seq")
    reason = _reason(event, f"Task {what}")
    if task.status in Task.DONE_STATES:
        return Outcome(False, f"task {task.pk} is already {task.status}")
    if what == "acknowledged":
        if task.status != Task.Status.DISPATCHED:
            return Outcome(False, f"task {task.pk} is {task.status}; no acknowledgement needed")
        orchestration.task_acknowledge(task=task, actor=actor, reason=reason, instruction_seq=seq)
        return Outcome(True)
    if what == "started":
        if task.status == Task.Status.IN_PROGRESS:
            return Outcome(False, f"task {task.pk} is already in progress")
        orchestration.task_start(task=task, actor=actor, reason=reason, instruction_seq=seq)
        return Outcome(True)
    done = payload.get("done_quantity")
    if what == "short" and done >= task.quantity:
        raise InvalidInput(
            f"A short confirmation must report fewer than {task.quantity} units.",
            fields={"payload.done_quantity": [f"Less than {task.quantity}."]},
        )
    if task.status == Task.Status.CREATED:  # a WMS that reports the finish only: the start is implied
        task = orchestration.task_start(task=task, actor=actor, reason=_reason(event, "Started (implied)"))
        seq = None
    orchestration.task_complete(task=task, done_quantity=done, actor=actor, reason=reason, instruction_seq=seq)
    return Outcome(True)


class StockReceivedPayload(serializers.Serializer):
    sku = serializers.CharField(max_length=40)
    warehouse = serializers.CharField(max_length=16)
    location = serializers.CharField(max_length=32)
    quantity = serializers.IntegerField(min_value=1, max_value=10_000_000)
    lot = serializers.CharField(max_length=40, required=False, allow_blank=True)
    receipt = serializers.CharField(max_length=40, required=False, allow_blank=True)
    receipt_line = serializers.IntegerField(min_value=1, max_value=100_000, required=False)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


def _location(payload: dict, known: dict | None = None):
    """The payload's location; `known` maps (warehouse code, location code) to locations read for a batch."""
    from inventory.models import Location

    key = (payload.get("warehouse"), payload.get("location"))
    if known is None:
        location = Location.objects.select_related("warehouse").filter(warehouse__code=key[0], code=key[1]).first()
    else:
        location = known.get(key)
    if location is None:
        raise NotFound(
            f"No location {payload.get('location')!r} in warehouse {payload.get('warehouse')!r}.",
            fields={"payload.location": ["Unknown."]},
        )
    return location


def _lot(item, payload: dict, known: dict | None = None):
    """The payload's lot of `item`, if it names one; `known` maps (item id, lot code) to lots read for a batch."""
    from inventory.models import Lot

    code = payload.get("lot")
    if not code:
        return None
    lot = Lot.objects.filter(item=item, code=code).first() if known is None else known.get((item.pk, code))
    if lot is None:
        raise NotFound(f"No lot {code!r} of {item.sku}.", fields={"payload.lot": ["Unknown."]})
    return lot


def _lots_named(items, codes: set[str]) -> dict:
    """The lots of `items` with these codes, keyed (item id, lot code) as `_lot` reads them (no query for none)."""
    from inventory.models import Lot

    if not codes:
        return {}
    return {(lot.item_id, lot.code): lot for lot in Lot.objects.filter(item__in=list(items), code__in=codes)}


def _item(payload: dict, known: dict | None = None):
    """The payload's item; `known` maps SKUs to items read for a batch."""
    from inventory.models import Item

    sku = payload.get("sku")
    item = Item.objects.filter(sku=sku).first() if known is None else known.get(sku)
    if item is None:
        raise NotFound(f"Unknown SKU {sku!r}.", fields={"payload.sku": ["Unknown."]})
    return item


def handle_stock_received(event) -> Outcome:
    """Units arrived at a location: against a receipt line when named, else as a plain receipt to stock."""
    from inventory import services as inventory
    from inventory.models import ReceiptLine

    payload = event.payload
    actor = _actor(event)
    location = _location(payload)
    if payload.get("receipt"):
        line = (
            ReceiptLine.objects.select_related("receipt", "item")
            .filter(receipt__number=payload["receipt"], line_no=payload.get("receipt_line") or 1)
            .first()
        )
        if line is None:
            raise NotFound(
                f"Receipt {payload['receipt']} has no line {payload.get('receipt_line') or 1}.",
                fields={"payload.receipt_line": ["Unknown."]},
            )
        if line.item.sku != payload["sku"]:
            raise InvalidInput(
                f"Line {line.line_no} of {line.receipt.number} is {line.item.sku}, not {payload['sku']}.",
                fields={"payload.sku": [f"Expected {line.item.sku}."]},
            )
        inventory.receipt_receive_line(
            line=line, quantity=payload["quantity"], location=location, actor=actor, reason=_reason(event, "Received")
        )
        return Outcome(True)
    item = _item(payload)
    inventory.stock_receive(
        item=item,
        location=location,
        quantity=payload["quantity"],
        lot=_lot(item, payload),
        actor=actor,
        reason=_reason(event, "Received"),
        source_type="event",
        source_ref=str(event.event_id)[:64],
    )
    return Outcome(True)


def _is_plain_arrival(payload: dict) -> bool:
    return not payload.get("receipt")


def handle_stock_received_batch(events: list) -> list:
    """Plain arrivals (no receipt line) of many events at once: three reads, then one receipt per partner.

    Returns per event its ``Outcome``, or the ``NotFound`` / ``InvalidInput`` that refuses it alone.
    """
    from inventory import services as inventory
    from inventory.models import Item, Location

    payloads = [event.payload for event in events]
    items = {item.sku: item for item in Item.objects.filter(sku__in={p.get("sku") for p in payloads})}
    locations = {
        (location.warehouse.code, location.code): location
        for location in Location.objects.select_related("warehouse").filter(
            warehouse__code__in={p.get("warehouse") for p in payloads}, code__in={p.get("location") for p in payloads}
        )
    }
    lots = _lots_named(items.values(), {p["lot"] for p in payloads if p.get("lot")})
    outcomes: list = []
    arrivals: dict[str, list] = {}
    for event in events:
        try:
            item = _item(event.payload, items)
            arrival = inventory.StockArrival(
                item=item,
                location=_location(event.payload, locations),
                quantity=event.payload["quantity"],
                lot=_lot(item, event.payload, lots),
                reason=_reason(event, "Received"),
                source_ref=str(event.event_id)[:64],
            )
            arrival.check()
        except DomainError as refused:
            outcomes.append(refused)
            continue
        outcomes.append(Outcome(True))
        arrivals.setdefault(event.partner.code, []).append(arrival)
    for partner_code, received in arrivals.items():
        inventory.stock_receive_many(
            arrivals=received,
            actor=Actor.partner(partner_code),
            reason=f"Received ({partner_code})",
            source_type="event",
        )
    return outcomes


class CountRecordedPayload(serializers.Serializer):
    count_id = serializers.IntegerField(min_value=1, max_value=BIGINT_MAX, required=False)
    sku = serializers.CharField(max_length=40, required=False)
    warehouse = serializers.CharField(max_length=16, required=False)
    location = serializers.CharField(max_length=32, required=False)
    lot = serializers.CharField(max_length=40, required=False, allow_blank=True)
    counted_quantity = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)

    def validate(self, attrs):
        if "count_id" not in attrs and not all(attrs.get(k) for k in ("sku", "warehouse", "location")):
            raise serializers.ValidationError("Give count_id, or sku, warehouse and location.")
        return attrs


def handle_count_recorded(event) -> Outcome:
    """A counter's result: for the open count named, or for the stock row (an unplanned count is opened)."""
    from inventory import services as inventory
    from inventory.models import CycleCount

    payload = event.payload
    actor = _actor(event)
    if payload.get("count_id"):
        count = CycleCount.objects.filter(pk=payload["count_id"]).first()
        if count is None:
            raise NotFound(f"Count {payload['count_id']} does not exist.", fields={"payload.count_id": ["Unknown."]})
    else:
        item = _item(payload)
        level = inventory.stock_level_for(item=item, location=_location(payload), lot=_lot(item, payload))
        count = inventory.count_request(stock_level=level, actor=actor, reason=_reason(event, "Counted by the WMS"))
    if count.status != CycleCount.Status.OPEN:
        return Outcome(False, f"count {count.pk} is already {count.status}")
    inventory.count_record(
        count=count, counted_quantity=payload["counted_quantity"], actor=actor, reason=_reason(event, "Counted")
    )
    return Outcome(True)


class ShipmentPackedPayload(serializers.Serializer):
    order = serializers.CharField(max_length=40)
    packages = serializers.IntegerField(min_value=1, max_value=10_000, required=False)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


class ShipmentShippedPayload(serializers.Serializer):
    order = serializers.CharField(max_length=40)
    shipment = serializers.CharField(max_length=40, required=False, allow_blank=True)
    carrier = serializers.CharField(max_length=40)
    tracking_number = serializers.CharField(max_length=80)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


def _order(payload: dict):
    from orchestration.models import Order

    order = Order.objects.filter(number=payload.get("order")).first()
    if order is None:
        raise NotFound(f"Order {payload.get('order')!r} does not exist.", fields={"payload.order": ["Unknown."]})
    return order


def handle_shipment_packed(event) -> Outcome:
    """The warehouse packed what was picked of an order."""
    from orchestration import services as orchestration
    from orchestration.models import Order

    order = _order(event.payload)
    if order.status != Order.Status.PICKING and order.status != Order.Status.RELEASED:
        return Outcome(False, f"order {order.number} is {order.status}; nothing to pack")
    orchestration.shipment_pack(
        order=order, packages=event.payload.get("packages") or 1, actor=_actor(event), reason=_reason(event, "Packed")
    )
    return Outcome(True)


def handle_shipment_shipped(event) -> Outcome:
    """The carrier collected a shipment of an order (its latest packed one unless named)."""
    from orchestration import services as orchestration
    from orchestration.models import Shipment

    payload = event.payload
    order = _order(payload)
    shipments = Shipment.objects.filter(order=order).order_by("-pk")
    shipment = (
        shipments.filter(number=payload["shipment"]).first()
        if payload.get("shipment")
        else shipments.filter(status=Shipment.Status.PACKED).first() or shipments.first()
    )
    if shipment is None:
        raise NotFound(f"Order {order.number} has no such shipment.", fields={"payload.shipment": ["Unknown."]})
    if shipment.status != Shipment.Status.PACKED:
        return Outcome(False, f"shipment {shipment.number} is already {shipment.status}")
    orchestration.shipment_ship(
        shipment=shipment,
        carrier=payload["carrier"],
        tracking_number=payload["tracking_number"],
        actor=_actor(event),
        reason=_reason(event, "Shipped"),
    )
    return Outcome(True)


class ShipmentDeliveredPayload(serializers.Serializer):
    order = serializers.CharField(max_length=40)
    shipment = serializers.CharField(max_length=40)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


def handle_shipment_delivered(event) -> Outcome:
    """The carrier delivered a shipment (proof of delivery)."""
    from orchestration import services as orchestration
    from orchestration.models import Shipment

    payload = event.payload
    order = _order(payload)
    shipment = Shipment.objects.filter(order=order, number=payload["shipment"]).first()
    if shipment is None:
        raise NotFound(
            f"Order {order.number} has no shipment {payload['shipment']!r}.", fields={"payload.shipment": ["Unknown."]}
        )
    if shipment.status == Shipment.Status.CONFIRMED:
        return Outcome(False, f"shipment {shipment.number} is already delivered")
    orchestration.shipment_confirm(shipment=shipment, actor=_actor(event), reason=_reason(event, "Delivered"))
    return Outcome(True)


class ReceiptLinePayload(serializers.Serializer):
    sku = serializers.CharField(max_length=40)
    expected_quantity = serializers.IntegerField(min_value=1, max_value=10_000_000)
    lot = serializers.CharField(max_length=40, required=False, allow_blank=True)


class ReceiptExpectedPayload(serializers.Serializer):
    receipt = serializers.CharField(max_length=40)
    warehouse = serializers.CharField(max_length=16)
    supplier = serializers.CharField(max_length=120)
    purchase_order = serializers.CharField(max_length=40, required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=["asn", "po"], required=False)
    dock = serializers.CharField(max_length=32, required=False, allow_blank=True)
    lines = ReceiptLinePayload(many=True, min_length=1, max_length=500)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


def handle_receipt_expected(event) -> Outcome:
    """The ERP announces a delivery (an ASN, or a purchase order to receive against) at one of our warehouses."""
    from inventory import services as inventory
    from inventory.models import Item, Receipt, Warehouse

    payload = event.payload
    known = Receipt.objects.filter(number=payload["receipt"]).first()
    if known is not None:
        return Outcome(False, f"receipt {known.number} is known already ({known.status})")
    warehouse = Warehouse.objects.filter(code=payload["warehouse"]).first()
    if warehouse is None:
        raise NotFound(f"No warehouse {payload['warehouse']!r}.", fields={"payload.warehouse": ["Unknown."]})
    dock = _location({"warehouse": warehouse.code, "location": payload["dock"]}) if payload.get("dock") else None
    items = {item.sku: item for item in Item.objects.filter(sku__in={line["sku"] for line in payload["lines"]})}
    unknown = {
        f"payload.lines.{index}.sku": ["Unknown."]
        for index, line in enumerate(payload["lines"])
        if line["sku"] not in items
    }
    if unknown:
        raise NotFound("The receipt names SKUs the portal does not know; nothing was recorded.", fields=unknown)
    lots = _lots_named(items.values(), {line["lot"] for line in payload["lines"] if line.get("lot")})
    lines = [
        {
            "item": items[line["sku"]],
            "expected_quantity": line["expected_quantity"],
            "lot": _lot(items[line["sku"]], line, lots),
        }
        for line in payload["lines"]
    ]
    inventory.receipt_create(
        number=payload["receipt"],
        warehouse=warehouse,
        supplier=payload["supplier"],
        lines=lines,
        document_kind=payload.get("kind") or Receipt.DocumentKind.ASN,
        purchase_order=payload.get("purchase_order") or "",
        dock=dock,
        actor=_actor(event),
        reason=_reason(event, f"Delivery expected from {payload['supplier']}"),
    )
    return Outcome(True)


class ReceiptClosedPayload(serializers.Serializer):
    receipt = serializers.CharField(max_length=40)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


def handle_receipt_closed(event) -> Outcome:
    """The WMS finished unloading a delivery: the receipt closes and lines off beyond policy raise variances."""
    from inventory import services as inventory
    from inventory.models import Receipt

    number = event.payload["receipt"]
    receipt = Receipt.objects.filter(number=number).first()
    if receipt is None:
        raise NotFound(f"Receipt {number!r} does not exist.", fields={"payload.receipt": ["Unknown."]})
    if receipt.status not in (Receipt.Status.EXPECTED, Receipt.Status.RECEIVING):
        return Outcome(False, f"receipt {receipt.number} is already {receipt.status}")
    # Arrivals go in order per stock item, the close per receipt: it waits for the arrivals sent before it.
    waiting = InboundEvent.objects.filter(
        status=InboundEvent.Status.PENDING, type="stock.received", payload__receipt=number, pk__lt=event.pk
    ).count()
    if waiting:
        raise Deferred(f"Receipt {number} still has {waiting} arrival(s) sent before the close waiting to be booked.")
    inventory.receipt_close(receipt=receipt, actor=_actor(event), reason=_reason(event, "Unloading finished"))
    return Outcome(True)


class OrderInvoicedPayload(serializers.Serializer):
    order = serializers.CharField(max_length=40)
    invoice = serializers.CharField(max_length=40)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)


def handle_order_invoiced(event) -> Outcome:
    """The ERP invoiced a shipped order: it leaves the credit in flight for the customer's open balance."""
    from orchestration import services as orchestration
    from orchestration.models import Order

    payload = event.payload
    order = _order(payload)
    if order.status in (Order.Status.INVOICED, Order.Status.CLOSED):
        return Outcome(False, f"order {order.number} is already {order.status}")
    orchestration.order_invoice(
        order=order,
        invoice=payload["invoice"],
        actor=_actor(event),
        reason=_reason(event, f"Invoice {payload['invoice']}"),
    )
    return Outcome(True)


class CustomerCreditPayload(serializers.Serializer):
    customer = serializers.CharField(max_length=32)
    open_balance = serializers.DecimalField(max_digits=14, decimal_places=2)
    credit_limit = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=0, required=False)
    credit_status = serializers.CharField(max_length=10, required=False)
    note = serializers.CharField(max_length=300, required=False, allow_blank=True)

    def validate_credit_status(self, value: str) -> str:
        from orchestration.models import Customer

        if value not in Customer.CreditStatus.values:
            raise serializers.ValidationError(f"One of: {', '.join(Customer.CreditStatus.values)}.")
        return value


def handle_customer_credit(event) -> Outcome:
    """The ERP's view of a customer's credit: open balance (invoiced, unpaid), and limit and status if it sends them."""
    from decimal import Decimal

    from orchestration import services as orchestration
    from orchestration.models import Customer

    payload = event.payload
    customer = Customer.objects.filter(code=payload.get("customer")).first()
    if customer is None:
        raise NotFound(
            f"Customer {payload.get('customer')!r} does not exist.", fields={"payload.customer": ["Unknown."]}
        )
    limit = payload.get("credit_limit")
    orchestration.customer_update_credit(
        customer=customer,
        open_balance=Decimal(str(payload["open_balance"])),
        credit_limit=Decimal(str(limit)) if limit is not None else None,
        credit_status=payload.get("credit_status"),
        actor=_actor(event),
        reason=_reason(event, "Credit standing from the ERP"),
    )
    return Outcome(True)


for _kind in ("acknowledged", "started", "completed"):
    register_event_handler(f"task.{_kind}", handle_task_event, payload_serializer=TaskPayload)
register_event_handler("task.short", handle_task_event, payload_serializer=ShortPayload)
register_event_handler(
    "stock.received",
    handle_stock_received,
    payload_serializer=StockReceivedPayload,
    batch_handler=handle_stock_received_batch,
    batchable=_is_plain_arrival,
)
register_event_handler("count.recorded", handle_count_recorded, payload_serializer=CountRecordedPayload)
register_event_handler("shipment.packed", handle_shipment_packed, payload_serializer=ShipmentPackedPayload)
register_event_handler("shipment.shipped", handle_shipment_shipped, payload_serializer=ShipmentShippedPayload)
register_event_handler(
    "shipment.delivered", handle_shipment_delivered, payload_serializer=ShipmentDeliveredPayload, partner_kinds=("tms",)
)
register_event_handler(
    "receipt.expected",
    handle_receipt_expected,
    subject=lambda payload: f"receipt:{payload.get('receipt')}",
    payload_serializer=ReceiptExpectedPayload,
    partner_kinds=("erp", "storefront"),
)
register_event_handler(
    "receipt.closed",
    handle_receipt_closed,
    subject=lambda payload: f"receipt:{payload.get('receipt')}",
    payload_serializer=ReceiptClosedPayload,
    partner_kinds=("wms",),
)
register_event_handler(
    "order.invoiced", handle_order_invoiced, payload_serializer=OrderInvoicedPayload, partner_kinds=("erp",)
)
register_event_handler(
    "customer.credit",
    handle_customer_credit,
    subject=lambda payload: f"customer:{payload.get('customer')}",
    payload_serializer=CustomerCreditPayload,
    partner_kinds=("erp",),
)


# --- orders from partners ---------------------------------------------------------------


class DuplicateOrder(DomainError):
    status = 409
    code = "duplicate_external_ref"


def partner_order_submit(*, partner: Partner, data: dict, actor: Actor):
    """Receive an order from a partner and take it as far as policy allows (validate, credit, allocate, release).

    `data` is the validated API payload (customer resolved, each line with its item). One
    transaction: a refusal anywhere leaves no order behind. The partner's code is the order's
    source, so its external reference is unique per partner: the database's unique constraint
    refuses a second order with it (no read before every insert), and the order that has it is
    looked up only then, for the answer.
    """
    from orchestration import services as orchestration
    from orchestration.models import Order

    reference = data["external_ref"]
    try:
        return orchestration.order_create(
            customer=data["customer"],
            lines=[
                orchestration.LineInput(line_no=line["line_no"], sku=line["sku"], quantity=line["quantity"])
                for line in data["lines"]
            ],
            items={line["sku"]: line["item"] for line in data["lines"] if "item" in line} or None,
            actor=actor,
            reason=f"Order {reference} received from {partner.code}",
            external_ref=reference,
            source=partner.code,
            ship_to=data["ship_to"],
            requested_ship_date=data.get("requested_ship_date"),
            service_level=data.get("service_level") or "standard",
            priority=data.get("priority") or Order.Priority.NORMAL,
            process=True,
        )
    except IntegrityError as error:
        if "order_external_ref_unique" not in str(error):
            raise
        # order_create's own transaction (a savepoint in the caller's) is gone: the caller's is usable.
        existing = Order.objects.filter(source=partner.code, external_ref=reference).values_list("number", flat=True)
        raise DuplicateOrder(
            f"Order {reference} was received already" + (f" (portal order {existing[0]})." if existing else "."),
            fields={"external_ref": ["Already used by an earlier order of this partner."]},
        ) from error
