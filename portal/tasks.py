"""Thin Celery wrappers for the event outbox."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from portal import events
from portal.models import DomainEvent


@shared_task(name="portal.tasks.dispatch_events", acks_late=True)
def dispatch_events(event_ids: list[int]) -> int:
    """Run the after-commit subscribers of one transaction's events, in the order they were published."""
    return sum(events.dispatch(event_id) for event_id in event_ids)


@shared_task(name="portal.tasks.dispatch_event", acks_late=True)
def dispatch_event(event_id: int) -> int:
    """One event (as queued before events were dispatched per transaction)."""
    return events.dispatch(event_id)


@shared_task(name="portal.tasks.sweep_events")
def sweep_events(older_than_seconds: int = 10, limit: int = 500) -> int:
    """Re-dispatch events whose after-commit dispatch never ran (lost message, broker outage)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    ids = list(
        DomainEvent.objects.filter(dispatched_at__isnull=True, occurred_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    for event_id in ids:
        events.dispatch(event_id)
    return len(ids)
