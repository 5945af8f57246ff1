"""Thin Celery wrappers for the order flow's timers (run by beat)."""

from __future__ import annotations

from celery import shared_task

from orchestration import services


@shared_task(name="orchestration.tasks.watch_cutoffs")
def watch_cutoffs() -> int:
    """Every minute: orders due today that will miss (or missed) their carrier pickup get a case."""
    return services.orders_watch_cutoffs()
