"""Named filters over stock rows."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Sum


class StockLevelQuerySet(models.QuerySet):
    def allocatable(self):
        """Rows in pick and reserve locations of active warehouses: what an order may be promised from."""
        return self.filter(
            location__kind__in=("pick", "reserve"), location__is_active=True, location__warehouse__is_active=True
        )

    def with_available(self):
        return self.annotate(available_quantity=F("on_hand") - F("reserved") - F("quarantined"))

    def totals(self):
        return self.aggregate(
            on_hand_total=Sum("on_hand"), reserved_total=Sum("reserved"), quarantined_total=Sum("quarantined")
        )
