"""Named filters over orders and tasks."""

from __future__ import annotations

from django.db import models


class OrderQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status__in=self.model.OPEN_STATES)

    def releasable(self):
        """Allocated (fully or partly) and waiting for release."""
        return self.filter(status__in=[self.model.Status.ALLOCATED, self.model.Status.PARTIALLY_ALLOCATED])

    def in_release_order(self):
        """Who goes first: priority, then risk (riskier earlier), then the requested ship date, then age."""
        return self.order_by(
            "-priority", models.F("risk_score").desc(nulls_last=True), "requested_ship_date", "created_at"
        )


class TaskQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status__in=self.model.OPEN_STATES)

    def awaiting_acknowledgement(self, now):
        return self.filter(status=self.model.Status.DISPATCHED, performer="machine", ack_deadline__lte=now)
