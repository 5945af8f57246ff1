"""Thin Celery wrappers: the SLA timer run by beat."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from exceptions import services


@shared_task(name="exceptions.tasks.check_sla")
def check_sla() -> int:
    """Every 30 s: mark cases at risk or breached and fire due escalation steps (each step once per case)."""
    return services.cases_check_sla(now=timezone.now())
