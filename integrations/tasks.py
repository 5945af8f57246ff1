"""Thin Celery wrappers for outbound delivery, its tick and inventory reconciliation."""

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
