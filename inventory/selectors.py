"""Reads of stock shared by pages, the API and the checks."""

from __future__ import annotations

from django.db import connection
from django.db.models import F, Sum

from inventory.models import Item, StockLevel, Warehouse


def availability(*, item: Item, warehouse: Warehouse | None = None) -> list[dict]:
    """Available to promise per warehouse: on hand − reserved − quarantined in pick and reserve locations."""
    rows = StockLevel.objects.allocatable().filter(item=item)
    if warehouse is not None:
        rows = rows.filter(location__warehouse=warehouse)
    totals = (
        rows.values(warehouse_code=F("location__warehouse__code"))
        .annotate(on_hand=Sum("on_hand"), reserved=Sum("reserved"), quarantined=Sum("quarantined"))
        .order_by("warehouse_code")
    )
    return [{**row, "available": row["on_hand"] - row["reserved"] - row["quarantined"]} for row in totals]


def network_available(*, item: Item) -> int:
    return sum(row["available"] for row in availability(item=item))


STOCK_INVARIANTS_SQL = """
SELECT s.id, s.on_hand, s.reserved, s.quarantined,
       COALESCE(m.on_hand, 0) AS ledger_on_hand, COALESCE(m.quarantined, 0) AS ledger_quarantined,
       COALESCE(r.reserved, 0) AS reservations_reserved
FROM inventory_stocklevel s
LEFT JOIN (SELECT stock_level_id, SUM(on_hand_delta) AS on_hand, SUM(quarantined_delta) AS quarantined
           FROM inventory_stockmovement GROUP BY stock_level_id) m ON m.stock_level_id = s.id
LEFT JOIN (SELECT stock_level_id, SUM(quantity) AS reserved FROM inventory_reservation
           WHERE status = 'reserved' GROUP BY stock_level_id) r ON r.stock_level_id = s.id
WHERE s.on_hand <> COALESCE(m.on_hand, 0)
   OR s.quarantined <> COALESCE(m.quarantined, 0)
   OR s.reserved <> COALESCE(r.reserved, 0)
   OR s.reserved + s.quarantined > s.on_hand
ORDER BY s.id
"""


def stock_discrepancies() -> list[dict]:
    """Stock rows that disagree with the ledger or with their active reservations (should be none)."""
    with connection.cursor() as cursor:
        cursor.execute(STOCK_INVARIANTS_SQL)
        columns = [col.name for col in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
