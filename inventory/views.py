"""The stock page: on hand, reserved, quarantined and available per warehouse and item, or per location."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.views.decorators.http import require_GET

from inventory import selectors
from inventory.models import Warehouse
from portal.cases import cases_about
from portal.home import home_panel
from portal.paging import paginate
from portal.roles import Role, require_role

STOCK_ROLES = (Role.WAREHOUSE_SUPERVISOR, Role.PROCUREMENT, Role.CUSTOMER_SERVICE, Role.OPERATIONS_ADMIN)
# Receipts: procurement owns them, the dock (supervisors) receives them, finance holds their invoices.
RECEIPT_ROLES = (Role.PROCUREMENT, Role.WAREHOUSE_SUPERVISOR, Role.FINANCE, Role.OPERATIONS_ADMIN)


def _warehouse_filter(request) -> tuple[list[tuple[str, str]], Warehouse | None]:
    """The warehouses to pick from, as (code, name), and the one the request picked (None: all of them)."""
    warehouses = list(Warehouse.objects.order_by("code"))
    code = request.GET.get("warehouse", "")
    return [(w.code, w.name) for w in warehouses], next((w for w in warehouses if w.code == code), None)


def _bar(on_hand: int, reserved: int, quarantined: int) -> dict:
    """Shares of on hand for the row's bar, in percent (reserved, quarantined, available)."""
    if on_hand <= 0:
        return {"reserved": 0, "quarantined": 0, "available": 0}
    reserved_share = round(100 * reserved / on_hand)
    quarantined_share = round(100 * quarantined / on_hand)
    return {
        "reserved": reserved_share,
        "quarantined": quarantined_share,
        "available": max(0, 100 - reserved_share - quarantined_share),
    }


@login_required
@require_GET
def stock_list(request):
    """Stock per warehouse × item (or per location with ?by=location), with a bar of what is promised and held."""
    require_role(request.user, *STOCK_ROLES, refusal="Stock belongs to supervisors, procurement and customer service.")
    warehouses, warehouse = _warehouse_filter(request)
    search = request.GET.get("q", "")[:64].strip()
    by_location = request.GET.get("by") == "location"
    if by_location:
        rows = selectors.stock_overview(warehouse=warehouse, search=search)
    else:
        rows = selectors.stock_by_item(warehouse=warehouse, search=search)
    paging = paginate(request, rows)
    lines = []
    for row in paging["page"].object_list:
        if by_location:
            figures = (row.on_hand, row.reserved, row.quarantined)
            lines.append(
                {
                    "warehouse": row.location.warehouse.code,
                    "sku": row.item.sku,
                    "description": row.item.description,
                    "where": row.location.code,
                    "lot": row.lot.code if row.lot_id else "",
                    "expires": row.lot.expires_on if row.lot_id else None,
                    "figures": figures,
                }
            )
        else:
            figures = (row["on_hand_total"], row["reserved_total"], row["quarantined_total"])
            lines.append(
                {
                    "warehouse": row["warehouse_code"],
                    "sku": row["sku"],
                    "description": row["description"],
                    "where": f"{row['locations']} location{'s' if row['locations'] != 1 else ''}",
                    "lot": "",
                    "expires": None,
                    "figures": figures,
                }
            )
        on_hand, reserved, quarantined = figures
        lines[-1].update(
            on_hand=on_hand,
            reserved=reserved,
            quarantined=quarantined,
            available=on_hand - reserved - quarantined,
            bar=_bar(on_hand, reserved, quarantined),
        )
    return render(
        request,
        "inventory/stock_list.html",
        {
            **paging,
            "lines": lines,
            "warehouses": warehouses,
            "warehouse": warehouse,
            "search": search,
            "by_location": by_location,
        },
    )


@login_required
@require_GET
def receipt_list(request):
    """Inbound deliveries (ASNs and purchase orders): what is expected, what arrived, and the variances held."""
    require_role(request.user, *RECEIPT_ROLES, refusal="Receipts belong to procurement, supervisors and finance.")
    warehouses, warehouse = _warehouse_filter(request)
    state = request.GET.get("state", "open")
    state = state if state in selectors.RECEIPT_STATE_GROUPS or state == "all" else "open"
    search = request.GET.get("q", "")[:64].strip()
    on_hold = request.GET.get("on_hold") == "1"
    paging = paginate(request, selectors.receipt_list(warehouse=warehouse, state=state, search=search, on_hold=on_hold))
    return render(
        request,
        "inventory/receipt_list.html",
        {
            **paging,
            "rows": selectors.receipt_rows(paging["page"].object_list),
            "warehouses": warehouses,
            "warehouse": warehouse,
            "state": state,
            "states": [*selectors.RECEIPT_STATE_GROUPS, "all"],
            "search": search,
            "on_hold": on_hold,
        },
    )


@login_required
@require_GET
def receipt_detail(request, number: str):
    """One receipt: its lines expected against received, the variances, and who changed what."""
    require_role(request.user, *RECEIPT_ROLES, refusal="Receipts belong to procurement, supervisors and finance.")
    detail = selectors.receipt_detail(number)
    if detail is None:
        raise Http404(f"No receipt {number}.")
    detail["cases"] = cases_about(detail["receipt"], viewer=request.user)
    return render(request, "inventory/receipt_detail.html", detail)


@home_panel(
    key="receipts",
    title="Inbound",
    template="inventory/_home_receipts.html",
    roles=(Role.PROCUREMENT, Role.FINANCE),
    order=40,
)
def receipts_panel(request) -> dict:
    return {"sites": selectors.receipts_summary()}
