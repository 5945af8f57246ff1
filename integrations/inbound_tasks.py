"""Thin Celery wrappers for inbound partner traffic: process events per subject, sweep, expire keys."""

from __future__ import annotations

from celery import shared_task

from integrations import idempotency, inbound


@shared_task(name="integrations.inbound.process_subject", queue="inbound", acks_late=True)
def process_inbound_subject(subject_key: str) -> int:
    """Drain one subject's pending events in order (tasks queued before subjects were sent in lists)."""
    return inbound.events_process_subjects(subject_keys=[subject_key])


@shared_task(name="integrations.inbound.process_subjects", queue="inbound", acks_late=True)
def process_inbound_subjects(subject_keys: list[str]) -> int:
    """Drain several subjects (a batch's), each in order; stock arrivals of all of them are settled together."""
    return inbound.events_process_subjects(subject_keys=subject_keys)


@shared_task(name="integrations.inbound.process_due", queue="inbound")
def process_due_inbound_events() -> int:
    """Beat: pick up events whose task was lost and events due for a retry."""
    return inbound.events_process_due()


@shared_task(name="integrations.inbound.expire_idempotency_keys")
def expire_idempotency_keys() -> int:
    """Beat: forget Idempotency-Keys past their retention (at least 24 hours)."""
    return idempotency.idempotency_keys_expire()


@shared_task(name="integrations.inbound.noop", queue="inbound")
def noop(mark: str = "") -> None:
    """Does nothing: the benchmark's measure of what the queue itself costs per task.

    Given `mark`, sets that Redis key, so the benchmark sees when the last of a batch ran.
    """
    if mark:
        from integrations.ratelimit import redis_client

        redis_client().set(mark, "1", ex=600)
