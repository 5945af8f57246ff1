"""The top bar's search, for equipment by its code."""

from __future__ import annotations

from django.urls import reverse

from automation.models import Equipment
from automation.views import BOARD_ROLES
from portal.roles import allowed
from portal.search import HITS_PER_SOURCE, Hit


def find(term: str, user) -> list[Hit]:
    if not allowed(user, *BOARD_ROLES):
        return []
    units = Equipment.objects.filter(code__istartswith=term).select_related("warehouse").order_by("code")
    return [
        Hit(
            "Equipment",
            unit.code,
            reverse("automation:equipment-detail", args=[unit.code]),
            f"{unit.get_kind_display()} · {unit.warehouse.code} zone {unit.zone} · {unit.get_status_display()}",
            exact=unit.code.lower() == term.lower(),
        )
        for unit in units[:HITS_PER_SOURCE]
    ]
