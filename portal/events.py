"""Publishing domain events: an outbox row in the caller's transaction, dispatch after commit.

Two kinds of subscriber:

* ``in_transaction`` subscribers run inside the publishing transaction, so their
  writes (an exception case, a rules-engine firing) commit or roll back with the
  change that caused them.
* ``after_commit`` subscribers run in a Celery worker once the change committed.
  Each (event, subscriber) pair is recorded in ``EventDelivery`` in the same
  transaction as the subscriber's own writes, so a redelivered event is a no-op.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.actors import Actor
from portal.models import DomainEvent, EventDelivery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscriber:
    pattern: str
    handler: Callable[[DomainEvent], None]
    key: str
    in_transaction: bool


_subscribers: list[Subscriber] = []


def subscribe(pattern: str, *, in_transaction: bool = False, key: str | None = None):
    """Register a subscriber for event names matching `pattern` (fnmatch: "order.*")."""

    def register(handler: Callable[[DomainEvent], None]):
        subscriber_key = key or f"{handler.__module__}.{handler.__qualname__}"
        if not any(s.key == subscriber_key and s.pattern == pattern for s in _subscribers):
            _subscribers.append(Subscriber(pattern, handler, subscriber_key, in_transaction))
        return handler

    return register


def subscribers_for(name: str, *, in_transaction: bool) -> list[Subscriber]:
    return [s for s in _subscribers if s.in_transaction == in_transaction and fnmatch.fnmatchcase(name, s.pattern)]


def subject_ref(subject) -> tuple[str, str]:
    if subject is None:
        return "", ""
    return subject._meta.label_lower, str(subject.pk)


def emit(
    name: str,
    *,
    subject=None,
    payload: dict | None = None,
    actor: Actor,
    reason: str = "",
    savepoint: bool = True,
) -> DomainEvent:
    """Record event `name` in the current transaction and schedule its dispatch on commit.

    The row and the in-transaction subscribers run in a savepoint: a subscriber that fails
    aborts the emit and nothing else. A service that publishes inside its own atomic block and
    lets every error leave that block may pass ``savepoint=False``: a failure then rolls back to
    the service's own savepoint (or the whole transaction), which takes the event with it, and
    the emit costs no SAVEPOINT / RELEASE round trips.
    """
    subject_type, subject_id = subject_ref(subject)
    needs_dispatch = bool(subscribers_for(name, in_transaction=False))
    with transaction.atomic(savepoint=savepoint):
        event = DomainEvent.objects.create(
            name=name,
            subject_type=subject_type,
            subject_id=subject_id,
            payload=payload or {},
            actor=actor.label,
            reason=reason,
            # An event no worker subscribes to is done once it commits: no task, no sweep.
            dispatched_at=None if needs_dispatch else timezone.now(),
        )
        for subscriber in subscribers_for(name, in_transaction=True):
            subscriber.handler(event)
    if needs_dispatch:
        _dispatch_on_commit([event.pk])
    return event


def emit_many(
    name: str,
    *,
    items: list[tuple[object, dict]],
    actor: Actor,
    reason: str = "",
    reasons: list[str] | None = None,
    savepoint: bool = True,
) -> list[DomainEvent]:
    """emit() for several subjects at once (subject, payload pairs): one INSERT for all the outbox rows.

    `reasons`, when given, is each event's own reason (in the order of `items`). In-transaction
    subscribers then run for each event in order, as consecutive emit() calls would run them.
    """
    if not items:
        return []
    needs_dispatch = bool(subscribers_for(name, in_transaction=False))
    reasons = reasons or [reason] * len(items)
    with transaction.atomic(savepoint=savepoint):
        rows = []
        for (subject, payload), why in zip(items, reasons, strict=True):
            subject_type, subject_id = subject_ref(subject)
            rows.append(
                DomainEvent(
                    name=name,
                    subject_type=subject_type,
                    subject_id=subject_id,
                    payload=payload or {},
                    actor=actor.label,
                    reason=why,
                    dispatched_at=None if needs_dispatch else timezone.now(),
                )
            )
        created = DomainEvent.objects.bulk_create(rows)
        subscribers = subscribers_for(name, in_transaction=True)
        for event in created:
            for subscriber in subscribers:
                subscriber.handler(event)
    if needs_dispatch:
        _dispatch_on_commit([event.pk for event in created])
    return created


DISPATCH_BATCH = 100  # events per dispatch task: a bulk action's events still spread over the workers


class _DispatchOnCommit:
    """The on-commit callback that queues a transaction's events: one task for up to DISPATCH_BATCH of them."""

    def __init__(self, event_ids: list[int]):
        self.event_ids = list(event_ids)

    def __call__(self) -> None:
        for start in range(0, len(self.event_ids), DISPATCH_BATCH):
            enqueue_dispatch(self.event_ids[start : start + DISPATCH_BATCH])


def _dispatch_on_commit(event_ids: list[int]) -> None:
    """Queue the events for dispatch once the transaction commits, together with its earlier events.

    They join the transaction's pending dispatch callback if it has one. Django drops a callback
    when a savepoint it was registered in rolls back; one that is still pending was registered
    at this level, above it, or in a savepoint already released, so it commits or rolls back
    exactly when these events do. An id whose own inner savepoint rolled back later rides
    along harmlessly: dispatch skips an event that does not exist.
    """
    db = transaction.get_connection()
    if db.in_atomic_block:
        for _savepoints, callback, _robust in reversed(db.run_on_commit):
            if isinstance(callback, _DispatchOnCommit):
                callback.event_ids.extend(event_ids)
                return
    transaction.on_commit(_DispatchOnCommit(event_ids))


def enqueue_dispatch(event_ids: list[int]) -> None:
    """Hand the events to a worker; on a broker outage the sweep picks them up later."""
    from portal.tasks import dispatch_events

    try:
        dispatch_events.apply_async((event_ids,), queue=settings.EVENTS_QUEUE)
    except Exception:
        logger.warning("event dispatch not queued; the sweep will retry", extra={"event_ids": event_ids})


def dispatch(event_id: int) -> int:
    """Run every after-commit subscriber of one event once; returns how many ran now."""
    try:
        event = DomainEvent.objects.get(pk=event_id)
    except DomainEvent.DoesNotExist:
        return 0
    ran = 0
    failed = False
    for subscriber in subscribers_for(event.name, in_transaction=False):
        try:
            with transaction.atomic():
                try:
                    with transaction.atomic():
                        EventDelivery.objects.create(event=event, handler=subscriber.key)
                except IntegrityError:
                    continue  # already processed by an earlier delivery
                subscriber.handler(event)
            ran += 1
        except Exception:
            failed = True  # rolled back with its delivery row; the sweep retries it
            logger.exception("event subscriber failed", extra={"event_id": event_id, "subscriber": subscriber.key})
    if not failed:
        DomainEvent.objects.filter(pk=event.pk, dispatched_at__isnull=True).update(dispatched_at=timezone.now())
    return ran
