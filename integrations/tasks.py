"""Thin Celery wrappers for outbound delivery, its tick, inventory reconciliation and message log retention."""

from __future__ import annotations

from celery import shared_task

from integrations import delivery


@shared_task(name="integrations.tasks.deliver_message", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver_message(message_id: int) -> str:
    return delivery.message_deliver(message_id=message_id)


@shared_task(name="integrations.tasks.outbound_tick", ignore_result=True)
def outbound_tick() -> dict:
    return delivery.outbound_tick()


@shared_task(name="integrations.tasks.reconcile_inventory", ignore_result=True)
def reconcile_inventory() -> dict:
    from integrations import reconciliation

    return reconciliation.inventory_reconcile()


@shared_task(name="integrations.tasks.prune_message_logs", ignore_result=True)
def prune_message_logs() -> dict:
    """Beat: delete finished message logs past MESSAGE_LOG_RETENTION_DAYS (0: keep them)."""
    import datetime as dt

    from django.conf import settings
    from django.utils import timezone

    from integrations.services import message_logs_prune
    from portal.actors import Actor

    if settings.MESSAGE_LOG_RETENTION_DAYS <= 0:
        return {}
    older_than = timezone.now() - dt.timedelta(days=settings.MESSAGE_LOG_RETENTION_DAYS)
    return message_logs_prune(older_than=older_than, actor=Actor.policy("message-log-retention"))
