"""Reads of stock shared by pages, the API and the checks."""

from __future__ import annotations

from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, Greatest

from inventory.models import (
    CarrierCutoff,
    Item,
    Receipt,
    ReceiptLine,
    Reservation,
    StockLevel,
    StockMovement,
    Warehouse,
)

# The receipts list's state filter, and the statuses it groups.
RECEIPT_STATE_GROUPS = {
    "open": [Receipt.Status.EXPECTED, Receipt.Status.RECEIVING],
    "closed": [Receipt.Status.CLOSED],
    "cancelled": [Receipt.Status.CANCELLED],
}
RECEIPT_TONE = {Receipt.Status.RECEIVING: "info", Receipt.Status.CLOSED: "ok"}  # the state badge's colour


def carrier_pickups(warehouse_id: int | None) -> list[CarrierCutoff]:
    """The carrier services that collect at a warehouse, by carrier and service level (one query)."""
    if warehouse_id is None:
        return []
    return list(CarrierCutoff.objects.filter(warehouse_id=warehouse_id).order_by("carrier", "service_level"))


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


def available_by_warehouse(*, item_ids: list[int]) -> dict[int, dict[str, int]]:
    """Available to promise per item and warehouse code, for several items at once (one query; zeros left out)."""
    found: dict[int, dict[str, int]] = {}
    rows = (
        StockLevel.objects.allocatable()
        .filter(item_id__in=item_ids)
        .values("item_id", warehouse_code=F("location__warehouse__code"))
        .annotate(available=Sum(F("on_hand") - F("reserved") - F("quarantined")))
        .filter(available__gt=0)
        .order_by("item_id", "warehouse_code")
    )
    for row in rows:
        found.setdefault(row["item_id"], {})[row["warehouse_code"]] = row["available"]
    return found


def inbound_by_item(*, warehouse: Warehouse, item_ids: list[int]) -> dict[int, list[dict]]:
    """Units still to arrive at `warehouse` per item, by open receipt (expected or being received), oldest first
    (one query)."""
    found: dict[int, list[dict]] = {}
    rows = (
        ReceiptLine.objects.filter(
            receipt__warehouse=warehouse,
            receipt__status__in=RECEIPT_STATE_GROUPS["open"],
            item_id__in=item_ids,
            expected_quantity__gt=F("received_quantity"),
        )
        .values(
            "item_id",
            "expected_quantity",
            "received_quantity",
            receipt_number=F("receipt__number"),
            supplier=F("receipt__supplier"),
            receipt_status=F("receipt__status"),
        )
        .order_by("receipt__created_at", "receipt_id", "line_no")
    )
    for row in rows:
        found.setdefault(row["item_id"], []).append(
            {
                "receipt": row["receipt_number"],
                "supplier": row["supplier"],
                "status": Receipt.Status(row["receipt_status"]).label,
                "outstanding": row["expected_quantity"] - row["received_quantity"],  # > 0: see the filter
            }
        )
    return found


def network_available(*, item: Item) -> int:
    return sum(row["available"] for row in availability(item=item))


STOCK_INVARIANTS_SQL = """
SELECT s.id, s.on_hand, s.reserved, s.quarantined,
       COALESCE(m.on_hand, 0) AS ledger_on_hand, COALESCE(m.quarantined, 0) AS ledger_quarantined,
       COALESCE(r.reserved, 0) AS reservations_reserved
FROM inventory_stocklevel s
LEFT JOIN (SELECT stock_level_id, SUM(on_hand_delta) AS on_hand, SUM(quarantined_delta) AS quarantined
           FROM inventory_stockmovement {movement_filter} GROUP BY stock_level_id) m ON m.stock_level_id = s.id
LEFT JOIN (SELECT stock_level_id, SUM(quantity) AS reserved FROM inventory_reservation
           WHERE status = 'reserved' {reservation_filter} GROUP BY stock_level_id) r ON r.stock_level_id = s.id
WHERE (s.on_hand <> COALESCE(m.on_hand, 0)
   OR s.quarantined <> COALESCE(m.quarantined, 0)
   OR s.reserved <> COALESCE(r.reserved, 0)
   OR s.reserved + s.quarantined > s.on_hand
   OR s.on_hand < 0 OR s.reserved < 0 OR s.quarantined < 0) {stock_filter}
ORDER BY s.id
"""


def stock_discrepancies(*, stock_level_ids: list[int] | None = None) -> list[dict]:
    """Stock rows that disagree with the ledger or with their active reservations (should be none).

    Each row: id, on_hand, reserved, quarantined (what the stock row says), ledger_on_hand,
    ledger_quarantined (the sum of the movement ledger) and reservations_reserved (the sum
    of active reservations). One query; ``stock_level_ids`` limits it to those rows.
    """
    params: list = []
    filters = {"movement_filter": "", "reservation_filter": "", "stock_filter": ""}
    if stock_level_ids is not None:
        if not stock_level_ids:
            return []
        filters = {
            "movement_filter": "WHERE stock_level_id = ANY(%s)",
            "reservation_filter": "AND stock_level_id = ANY(%s)",
            "stock_filter": "AND s.id = ANY(%s)",
        }
        params = [list(stock_level_ids)] * 3
    with connection.cursor() as cursor:
        cursor.execute(STOCK_INVARIANTS_SQL.format(**filters), params)
        columns = [col.name for col in cursor.description]
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def stock_discrepancy_report(*, warehouse_code: str | None = None) -> list[dict]:
    """Discrepancies with the warehouse, location, SKU and lot of each row, and what is off in plain words."""
    rows = stock_discrepancies()
    if not rows:
        return []
    levels = StockLevel.objects.select_related("item", "location__warehouse", "lot").in_bulk([r["id"] for r in rows])
    report = []
    for row in rows:
        level = levels.get(row["id"])
        if level is None or (warehouse_code and level.location.warehouse.code != warehouse_code):
            continue
        problems = []
        if row["on_hand"] != row["ledger_on_hand"]:
            problems.append(f"on hand {row['on_hand']} but the ledger sums to {row['ledger_on_hand']}")
        if row["quarantined"] != row["ledger_quarantined"]:
            problems.append(f"quarantined {row['quarantined']} but the ledger sums to {row['ledger_quarantined']}")
        if row["reserved"] != row["reservations_reserved"]:
            problems.append(
                f"reserved {row['reserved']} but active reservations add up to {row['reservations_reserved']}"
            )
        if row["reserved"] + row["quarantined"] > row["on_hand"]:
            problems.append("more reserved and quarantined than on hand")
        report.append(
            {
                **row,
                "warehouse": level.location.warehouse.code,
                "location": level.location.code,
                "sku": level.item.sku,
                "lot": level.lot.code if level.lot_id else "",
                "problems": problems,
            }
        )
    return report


def stock_overview(*, warehouse: Warehouse | None = None, search: str = "", only_with_stock: bool = True):
    """Stock rows for the stock page: item, location, lot and the three quantities with what is available."""
    rows = (
        StockLevel.objects.select_related("item", "location__warehouse", "lot")
        .with_available()
        .order_by("location__warehouse__code", "item__sku", "location__pick_sequence", "location__code", "pk")
    )
    if warehouse is not None:
        rows = rows.filter(location__warehouse=warehouse)
    if search:
        rows = rows.filter(Q(item__sku__icontains=search) | Q(item__description__icontains=search))
    if only_with_stock:
        rows = rows.filter(on_hand__gt=0)
    return rows


def stock_by_item(*, warehouse: Warehouse | None = None, search: str = ""):
    """On hand, reserved, quarantined and available per warehouse × item (one grouped query)."""
    rows = StockLevel.objects.all()
    if warehouse is not None:
        rows = rows.filter(location__warehouse=warehouse)
    if search:
        rows = rows.filter(Q(item__sku__icontains=search) | Q(item__description__icontains=search))
    return (
        rows.values(
            "item_id",
            sku=F("item__sku"),
            description=F("item__description"),
            unit=F("item__unit_of_measure"),
            warehouse_code=F("location__warehouse__code"),
        )
        .annotate(
            on_hand_total=Sum("on_hand"),
            reserved_total=Sum("reserved"),
            quarantined_total=Sum("quarantined"),
            locations=Count("location", distinct=True),
        )
        .annotate(available_total=F("on_hand_total") - F("reserved_total") - F("quarantined_total"))
        .order_by("warehouse_code", "sku")
    )


# --- the order timeline (registered as the "inventory" source) -------------------------


def order_timeline(order) -> list:
    """Reservations of an order (their history) and the ledger lines its picks and short picks wrote (3 queries).

    `order` is anything with ``number``; inventory knows orders only by number and line id.
    """
    from portal.timeline import TimelineEntry

    reservations = list(
        Reservation.objects.filter(order_number=order.number).values_list("pk", "stock_level_id", "tasks__id")
    )
    if not reservations:
        return []
    reservation_ids = {pk for pk, _, _ in reservations}
    stock_ids = {stock_id for _, stock_id, _ in reservations}
    refs = {str(pk) for pk in reservation_ids} | {f"task:{task_id}" for _, _, task_id in reservations if task_id}
    entries = []
    previous: dict = {}
    rows = (
        Reservation.history.filter(id__in=reservation_ids)
        .select_related("stock_level__location", "item")
        .order_by("history_date", "history_id")
    )
    for row in rows:
        before = previous.get(row.id)
        where = row.stock_level.location.code if row.stock_level else "?"
        if row.history_type == "+" or before is None:
            sku = row.item.sku if row.item else f"item {row.item_id}"
            title = f"Reserved {row.quantity} × {sku} at {where} (reservation {row.id})"
        elif before.status != row.status:
            title = f"Reservation {row.id} {row.get_status_display().lower()}" + (
                f": {row.picked_quantity} of {row.quantity} picked" if row.status == Reservation.Status.PICKED else ""
            )
        else:
            title = f"Reservation {row.id} updated"
        entries.append(
            TimelineEntry(
                at=row.history_date,
                kind="reservation",
                title=title,
                actor=row.history_actor,
                detail=row.history_reason,
                extra={"status": row.status},
            )
        )
        previous[row.id] = row
    movements = (
        StockMovement.objects.filter(stock_level_id__in=stock_ids, source_type="reservation", source_ref__in=refs)
        .select_related("stock_level__location", "stock_level__item")
        .order_by("created_at", "pk")
    )
    for movement in movements:
        level = movement.stock_level
        change = movement.on_hand_delta or movement.quarantined_delta
        entries.append(
            TimelineEntry(
                at=movement.created_at,
                kind="movement",
                title=f"Ledger: {movement.get_kind_display().lower()} {change:+d} {level.item.sku} at {level.location.code}",
                actor=movement.actor,
                detail=movement.reason,
            )
        )
    return entries


# --- receipts ------------------------------------------------------------------------------


def receipt_list(*, warehouse: Warehouse | None = None, state: str = "", search: str = "", on_hold: bool = False):
    """Receipts with their line count and expected and received units, newest first (one grouped query).

    `state` is a key of RECEIPT_STATE_GROUPS (anything else: every receipt); `search` matches the
    receipt number, the purchase order and the supplier; `on_hold`: only receipts whose supplier
    invoice is held after a variance.
    """
    rows = Receipt.objects.select_related("warehouse").annotate(
        line_count=Count("lines"),
        expected_units=Coalesce(Sum("lines__expected_quantity"), 0),
        received_units=Coalesce(Sum("lines__received_quantity"), 0),
    )
    if warehouse is not None:
        rows = rows.filter(warehouse=warehouse)
    if state in RECEIPT_STATE_GROUPS:
        rows = rows.filter(status__in=RECEIPT_STATE_GROUPS[state])
    if search:
        rows = rows.filter(
            Q(number__icontains=search) | Q(purchase_order__icontains=search) | Q(supplier__icontains=search)
        )
    if on_hold:
        rows = rows.filter(invoice_on_hold=True)
    return rows.order_by("-created_at", "-pk")


def receipt_rows(receipts) -> list[Receipt]:
    """A page of receipts with what the list shows beside each: its badge's tone, the variance and the share of
    units arrived."""
    rows = list(receipts)
    for receipt in rows:
        receipt.tone = RECEIPT_TONE.get(receipt.status, "")
        receipt.variance = receipt.received_units - receipt.expected_units
        receipt.received_share = (
            min(100, round(100 * receipt.received_units / receipt.expected_units)) if receipt.expected_units else 0
        )
    return rows


def receipt_detail(number: str) -> dict | None:
    """One receipt with its lines (items and lots) and its recorded changes, oldest first (three queries)."""
    receipt = Receipt.objects.select_related("warehouse", "dock").filter(number=number).first()
    if receipt is None:
        return None
    receipt.tone = RECEIPT_TONE.get(receipt.status, "")
    lines = list(receipt.lines.select_related("item", "lot").order_by("line_no"))
    history = list(receipt.history.order_by("history_date", "history_id"))
    return {"receipt": receipt, "lines": lines, "history": history}


def receipts_summary() -> list[dict]:
    """Per active warehouse: receipts expected, being received, and closed with the supplier invoice held, with the
    units still to come on the open ones (one grouped query)."""
    open_states = RECEIPT_STATE_GROUPS["open"]
    rows = (
        Receipt.objects.filter(warehouse__is_active=True)
        .filter(Q(status__in=open_states) | Q(invoice_on_hold=True))
        .values(code=F("warehouse__code"), name=F("warehouse__name"))
        .annotate(
            expected=Count("id", filter=Q(status=Receipt.Status.EXPECTED), distinct=True),
            receiving=Count("id", filter=Q(status=Receipt.Status.RECEIVING), distinct=True),
            on_hold=Count("id", filter=Q(invoice_on_hold=True), distinct=True),
            # Per line, so a line delivered over its quantity does not offset another still to come.
            units_to_come=Coalesce(
                Sum(
                    Greatest(F("lines__expected_quantity") - F("lines__received_quantity"), 0),
                    filter=Q(status__in=open_states),
                ),
                0,
            ),
        )
        .order_by("code")
    )
    return list(rows)
