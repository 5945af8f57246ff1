"""Thin Celery wrappers: the automation timers (run by beat) and on-demand catch-ups."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from automation import risk, services


@shared_task(name="automation.tasks.expire_handoffs")
def expire_handoffs() -> dict:
    """Every few seconds: resend or fall back unacknowledged instructions; re-route work held by stopped units;
    raise a case for work a unit started and never finished."""
    now = timezone.now()
    return {
        "expired": services.handoffs_expire(now=now),
        "reconciled": services.handoffs_reconcile(now=now),
        "stalled": services.handoffs_detect_stalled(now=now),
    }


@shared_task(name="automation.tasks.check_heartbeats")
def check_heartbeats() -> int:
    """Every few seconds: units silent past their timeout go offline (their work is re-routed, a case raised)."""
    return services.equipments_check_heartbeats(now=timezone.now())


@shared_task(name="automation.tasks.dispatch_pending")
def dispatch_pending(warehouse_id: int | None = None) -> int:
    """Hand untouched machine-zone tasks to the WCS (after a unit returns, and periodically)."""
    return services.handoffs_dispatch_pending(now=timezone.now(), warehouse_id=warehouse_id)


@shared_task(name="automation.tasks.score_open_orders")
def score_open_orders(limit: int = 200) -> int:
    """Score open orders that have no risk score yet (orders allocated before a model existed, missed hooks)."""
    now = timezone.now()
    order_ids = risk.open_orders_to_score(limit=limit)
    for order_id in order_ids:
        services.order_score_risk(order=order_id, now=now)
    return len(order_ids)


@shared_task(name="automation.tasks.retrain_risk")
def retrain_risk() -> dict:
    """Nightly: refit the risk models on recent history."""
    report = risk.train(trained_by="system:nightly-retrain")
    return {"version": report.version, "orders": report.orders, "metrics": report.metrics}
