"""The order pages: a filtered, paginated list and an order's detail with its timeline; a few decisions by role."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from inventory.models import CarrierCutoff, Warehouse
from orchestration import selectors, services
from orchestration.models import Customer, Order, Shipment, Task
from portal.actors import Actor
from portal.domain import DomainError
from portal.home import home_panel, panel_alone
from portal.paging import paginate
from portal.roles import Role, allowed, require_role
from portal.timeline import entries_for

# What a role may decide on the order page:
# action → (roles, service call, button label, what the message says happened, states it applies to).
ORDER_ACTIONS = {
    "hold": (
        (Role.CUSTOMER_SERVICE, Role.OPERATIONS_ADMIN),
        services.order_hold,
        "Put on hold",
        "put on hold",
        Order.HOLDABLE,
    ),
    "unhold": (
        (Role.CUSTOMER_SERVICE, Role.OPERATIONS_ADMIN),
        services.order_unhold,
        "Release the hold",
        "released from hold",
        [Order.Status.ON_HOLD],
    ),
    "release_credit_hold": (
        (Role.FINANCE,),
        services.order_release_credit_hold,
        "Release credit hold",
        "released from credit hold",
        [Order.Status.CREDIT_HOLD],
    ),
    "release": (
        (Role.WAREHOUSE_SUPERVISOR, Role.OPERATIONS_ADMIN),
        services.order_release,
        "Release to the warehouse",
        "released to the warehouse",
        [Order.Status.ALLOCATED, Order.Status.PARTIALLY_ALLOCATED],
    ),
    "cancel": (
        (Role.CUSTOMER_SERVICE, Role.OPERATIONS_ADMIN),
        services.order_cancel,
        "Cancel the order",
        "cancelled",
        Order.CANCELLABLE,
    ),
}


# Who watches today's pickups: the floor, the carriers' side, and those who answer "will it ship today?".
CUTOFF_ROLES = (
    Role.WAREHOUSE_SUPERVISOR,
    Role.TRANSPORTATION,
    Role.CUSTOMER_SERVICE,
    Role.OPERATIONS_ADMIN,
)


FLOOR_ROLES = (Role.WAREHOUSE_SUPERVISOR, Role.OPERATIONS_ADMIN)
# Who may record a pickup by hand (when the carrier's scan did not come through the TMS).
SHIP_ROLES = (Role.TRANSPORTATION, Role.WAREHOUSE_SUPERVISOR, Role.OPERATIONS_ADMIN)


def _require_order_role(request) -> None:
    require_role(
        request.user,
        *selectors.ORDER_ROLES,
        refusal="Orders belong to customer service, supervisors, finance and transportation.",
    )


def _parse_date(value: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(value) if value else None
    except ValueError:
        return None


@login_required
@require_GET
def order_list(request):
    """Orders, newest first: filter by status, warehouse, customer and ship date; search number or external ref."""
    _require_order_role(request)
    status = request.GET.get("status", "")
    filters = selectors.OrderFilters(
        status=status if status in Order.Status.values or status == selectors.NOT_PACKED else "",
        warehouse=request.GET.get("warehouse", "")[:16],
        customer=request.GET.get("customer", "")[:32],
        ship_date=_parse_date(request.GET.get("ship_date", "")),
        ship_by=_parse_date(request.GET.get("ship_by", "")),
        carrier=request.GET.get("carrier", "")[:40],
        search=request.GET.get("q", "")[:64],
    )
    paging = paginate(request, selectors.order_list(filters))
    now = timezone.now()
    rows = [
        {"order": order, "tone": selectors.STATUS_TONE.get(order.status, ""), "due": selectors.due_state(order, now)}
        for order in paging["page"].object_list
    ]
    return render(
        request,
        "orchestration/order_list.html",
        {
            **paging,
            "rows": rows,
            "filters": filters,
            "statuses": Order.Status.choices,
            "not_packed": selectors.NOT_PACKED,
            "no_carrier": selectors.NO_CARRIER,
            "carriers": CarrierCutoff.objects.order_by("carrier").values_list("carrier", flat=True).distinct(),
            "warehouses": Warehouse.objects.order_by("code").values_list("code", "name"),
            "customers": Customer.objects.order_by("code").values_list("code", "name"),
        },
    )


@home_panel(
    key="cutoffs",
    title="Carrier cutoffs today",
    template="orchestration/_home_cutoffs.html",
    roles=CUTOFF_ROLES,
    order=25,
)
def cutoffs_panel(request) -> dict:
    return {"rows": selectors.cutoff_board(), "not_packed": selectors.NOT_PACKED}


@login_required
@require_GET
def cutoff_board(request):
    """The home page's cutoff board alone, refetched by the page every minute."""
    return panel_alone(
        request,
        cutoffs_panel,
        "orchestration/_cutoff_rows.html",
        roles=CUTOFF_ROLES,
        refusal="The cutoff board belongs to supervisors, transportation and customer service.",
    )


@home_panel(
    key="floor",
    title="The floor",
    template="orchestration/_home_floor.html",
    roles=FLOOR_ROLES,
    order=30,
    wide=True,
)
def floor_panel(request) -> dict:
    return {"floors": selectors.floor_activity(), "hours": selectors.FLOOR_HOURS}


@login_required
@require_GET
def floor(request):
    """The home page's floor panel alone, refetched by the page every minute."""
    return panel_alone(
        request,
        floor_panel,
        "orchestration/_floor_rows.html",
        roles=FLOOR_ROLES,
        refusal="The floor panel belongs to warehouse supervisors and operations admins.",
    )


@login_required
@require_GET
def task_list(request):
    """Warehouse tasks by warehouse, zone, state and kind: open work the longest waiting first."""
    require_role(
        request.user, *FLOOR_ROLES, refusal="The task list belongs to warehouse supervisors and operations admins."
    )
    state = request.GET.get("state", "open")
    kind = request.GET.get("kind", "")
    filters = selectors.TaskFilters(
        warehouse=request.GET.get("warehouse", "")[:16],
        zone=request.GET.get("zone", "")[:32],
        state=state if state in selectors.TASK_STATES else "",
        kind=kind if kind in Task.Kind.values else "",
    )
    paging = paginate(request, selectors.task_list(filters))
    return render(
        request,
        "orchestration/task_list.html",
        {
            **paging,
            "rows": selectors.task_rows(paging["page"].object_list),
            "filters": filters,
            "states": [(key, key.replace("_", " ")) for key in selectors.TASK_STATES],
            "kinds": Task.Kind.choices,
            "warehouses": Warehouse.objects.order_by("code").values_list("code", "name"),
        },
    )


@login_required
@require_GET
def shipment_list(request):
    """Shipments by warehouse, carrier and state: what waits on the dock for which pickup, what left, what arrived."""
    require_role(
        request.user, *CUTOFF_ROLES, refusal="Shipments belong to transportation, supervisors and customer service."
    )
    state = request.GET.get("state", "waiting")
    filters = selectors.ShipmentFilters(
        warehouse=request.GET.get("warehouse", "")[:16],
        carrier=request.GET.get("carrier", "")[:40],
        state=state if state in selectors.SHIPMENT_STATES else "",
        search=request.GET.get("q", "")[:64].strip(),
    )
    paging = paginate(request, selectors.shipment_list(filters))
    return render(
        request,
        "orchestration/shipment_list.html",
        {
            **paging,
            "rows": selectors.shipment_rows(paging["page"].object_list),
            "filters": filters,
            "states": list(selectors.SHIPMENT_STATES),
            "no_carrier": selectors.NO_CARRIER,
            "carriers": CarrierCutoff.objects.order_by("carrier").values_list("carrier", flat=True).distinct(),
            "warehouses": Warehouse.objects.order_by("code").values_list("code", "name"),
            "can_ship": allowed(request.user, *SHIP_ROLES),
        },
    )


@login_required
@require_POST
def shipment_ship(request, number: str):
    """Record that the carrier collected a packed shipment, with its tracking number and why it is entered here."""
    require_role(request.user, *SHIP_ROLES, refusal="Transportation and supervisors record pickups.")
    shipment = Shipment.objects.filter(number=number).first()
    if shipment is None:
        raise Http404(f"No shipment {number}.")
    reason = request.POST.get("reason", "").strip()
    if not reason:
        messages.error(request, "Say why the pickup is entered by hand, for the record. Nothing was changed.")
    else:
        try:
            services.shipment_ship(
                shipment=shipment,
                carrier=request.POST.get("carrier", "")[:100],
                tracking_number=request.POST.get("tracking_number", "")[:200],
                actor=Actor.for_user(request.user),
                reason=reason[:500],
            )
        except DomainError as error:
            messages.error(request, f"{number}: {error.message}")
        else:
            messages.success(request, f"{number} recorded as shipped; the ERP is told.")
    back = request.POST.get("next", "")
    if back.startswith("/orders/shipments/") and url_has_allowed_host_and_scheme(back, allowed_hosts=None):
        return redirect(back)
    return redirect("orchestration:shipment-list")


def _require_credit_role(request) -> None:
    require_role(
        request.user,
        *selectors.CREDIT_ROLES,
        refusal="Customers' credit belongs to finance and customer service.",
    )


@login_required
@require_GET
def customer_list(request):
    """Customers by how much of their credit limit they use, with the orders held for credit; those needing a look
    first (blocked, watched, holding orders, near the limit) unless all are asked for."""
    _require_credit_role(request)
    focus = request.GET.get("focus", "attention")
    focus = focus if focus in selectors.CUSTOMER_FOCUS else "attention"
    search = request.GET.get("q", "")[:64]
    paging = paginate(request, selectors.customer_credit_list(search=search, focus=focus))
    return render(
        request,
        "orchestration/customer_list.html",
        {
            **paging,
            "focus": focus,
            "focuses": selectors.CUSTOMER_FOCUS.items(),
            "search": search,
            "near_limit": selectors.NEAR_LIMIT_PERCENT,
        },
    )


@login_required
@require_GET
def customer_detail(request, code: str):
    """One customer's credit: limit, balance, orders in flight and held, who changed the terms, and the latest orders."""
    _require_credit_role(request)
    customer = Customer.objects.filter(code=code).first()
    if customer is None:
        raise Http404(f"No customer {code}.")
    return render(
        request,
        "orchestration/customer_detail.html",
        {"account": selectors.customer_account(customer), "order_links": selectors.may_open_orders(request.user)},
    )


@login_required
@require_GET
def order_detail(request, number: str):
    """One order: lines, reservations, tasks, shipments, why it is not released yet, and its timeline."""
    _require_order_role(request)
    detail = selectors.order_detail(number)
    if detail is None:
        raise Http404(f"No order {number}.")
    order = detail["order"]
    now = timezone.now()
    for task in detail["tasks"]:
        task.tone = selectors.TASK_TONE.get(task.status, "")
    actions = [
        {"name": name, "label": label}
        for name, (roles, _, label, _, states) in ORDER_ACTIONS.items()
        if order.status in states and allowed(request.user, *roles)
    ]
    return render(
        request,
        "orchestration/order_detail.html",
        {
            **detail,
            "tone": selectors.STATUS_TONE.get(order.status, ""),
            "customer_link": allowed(request.user, *selectors.CREDIT_ROLES),
            "due": selectors.due_state(order, now),
            "progress": selectors.line_progress(detail["lines"]),
            "shortages": selectors.order_shortages(order, detail["lines"]),
            "blockers": services.release_blockers(order, now=now)
            if order.status in (Order.Status.ALLOCATED, Order.Status.PARTIALLY_ALLOCATED)
            else [],
            "timeline": entries_for(order, viewer=request.user),
            "actions": actions,
        },
    )


@login_required
@require_POST
def order_action(request, number: str, action: str):
    """A decision on an order (hold, unhold, cancel, credit release, release): through its service, with a reason."""
    _require_order_role(request)
    if action not in ORDER_ACTIONS:
        raise Http404("No such action.")
    roles, service, _, done, _ = ORDER_ACTIONS[action]
    require_role(request.user, *roles, refusal="Your role does not take this decision.")
    order = Order.objects.filter(number=number).first()
    if order is None:
        raise Http404(f"No order {number}.")
    reason = request.POST.get("reason", "").strip()
    if not reason:
        messages.error(request, "A reason is required: say why, for the record. Nothing was changed.")
        return redirect("orchestration:order-detail", number=number)
    try:
        service(order=order, actor=Actor.for_user(request.user), reason=reason)
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Order {number} {done}.")
    return redirect("orchestration:order-detail", number=number)
