"""Named filters over equipment, hand-offs and rules."""

from __future__ import annotations

import datetime as dt

from django.db import models


class EquipmentQuerySet(models.QuerySet):
    def dispatchable(self):
        return self.filter(is_active=True, status__in=self.model.DISPATCHABLE)

    def serving(self, *, warehouse_id: int, kind: str, zone: str):
        """Active units of a warehouse whose capabilities cover this task kind in this zone."""
        return self.filter(
            warehouse_id=warehouse_id,
            is_active=True,
            capabilities__task_kinds__contains=[kind],
            capabilities__zones__contains=[zone],
        )

    def heartbeat_overdue(self, now: dt.datetime):
        """Monitored units whose last heartbeat (or last status change, if none) is older than their timeout."""
        last_seen = models.functions.Coalesce("last_heartbeat_at", "status_changed_at")
        deadline = models.ExpressionWrapper(
            last_seen + models.F("heartbeat_timeout_seconds") * dt.timedelta(seconds=1),
            output_field=models.DateTimeField(),
        )
        return (
            self.filter(is_active=True, status__in=self.model.MONITORED)
            .annotate(heartbeat_deadline=deadline)
            .filter(heartbeat_deadline__lt=now)
        )


class HandOffQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status__in=self.model.OPEN)


class RuleQuerySet(models.QuerySet):
    def enabled_for(self, trigger: str):
        return self.filter(enabled=True, trigger=trigger).order_by("order", "id")
