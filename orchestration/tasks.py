"""Thin Celery wrappers for the order flow's timers (run by beat)."""

from __future__ import annotations

from celery import shared_task

from orchestration import services
from portal.actors import Actor


@shared_task(name="orchestration.tasks.watch_cutoffs")
def watch_cutoffs() -> int:
    """Every minute: orders due today that will miss (or missed) their carrier pickup get a case."""
    return services.orders_watch_cutoffs()


@shared_task(name="orchestration.tasks.release_due")
def release_due() -> dict:
    """Every minute: waiting orders take stock that became free, then every order the policy now allows is released."""
    filled = services.orders_fill_backorders_due(actor=Actor.policy("backorder-fill"))
    released = services.orders_release_due(actor=Actor.policy("release"))
    return {"filled": filled, "released": released}
