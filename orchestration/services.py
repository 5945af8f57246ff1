"""Every change to customers' orders, warehouse tasks and shipments: the order-to-ship flow.

Each public function is one business action: keyword-only, takes the actor and a
reason, runs in one transaction, locks what it changes (order → reservations → stock,
each by primary key), records history and publishes its events through the outbox.
Every change to a task locks its order first, then the task (``_lock_task``), as cancelling
an order and a pack the WMS reports do: a person and a partner acting on one order at once
take turns on the order row and never deadlock.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q, Sum
from django.utils import timezone

from inventory import services as inventory
from inventory.models import Item, Location, Reservation, StockLevel, Warehouse
from orchestration import events
from orchestration.models import Customer, Order, OrderLine, ReleasePolicy, Shipment, ShipmentLine, Task
from portal.actors import Actor, stamp_history
from portal.domain import DomainError, InvalidInput, TransitionRefused, require_reason, transition
from portal.events import emit, emit_many
from portal.formatting import amount

# --- helpers -------------------------------------------------------------------------


def _emit(name: str, **kwargs):
    """emit() from inside this module's own service transaction, which every error leaves: a failing
    subscriber rolls the whole service call back, so the event needs no savepoint of its own."""
    return emit(name, savepoint=False, **kwargs)


def _emit_many(name: str, **kwargs):
    return emit_many(name, savepoint=False, **kwargs)


def _next_number(sequence: str, prefix: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT nextval(%s)", [sequence])
        return f"{prefix}{cursor.fetchone()[0]}"


_order_locks = threading.local()


def _order_locks_taken() -> int:
    """How many times this thread has locked an order: every change to an order starts with that lock."""
    return getattr(_order_locks, "count", 0)


def _lock_order(order: Order | int) -> Order:
    """Lock the order row alone; its customer and warehouse come along unlocked (every order shares them)."""
    _order_locks.count = _order_locks_taken() + 1
    pk = order.pk if isinstance(order, Order) else order
    return Order.objects.select_for_update(of=("self",), no_key=True).select_related("customer", "warehouse").get(pk=pk)


def _order_payload(order: Order, **extra) -> dict:
    return {
        "order": order.number,
        "order_id": order.pk,
        "external_ref": order.external_ref,
        "source": order.source,
        "customer": order.customer.code,
        "customer_id": order.customer_id,
        "service_tier": order.customer.service_tier,
        "warehouse": order.warehouse.code,
        "warehouse_id": order.warehouse_id,
        "status": order.status,
        "priority": order.priority,
        "value": str(order.total_value),
        **extra,
    }


def release_policy_for(warehouse: Warehouse | int) -> ReleasePolicy:
    """The warehouse's (or warehouse id's) own policy, else the global one, else the built-in default (one query)."""
    return (
        ReleasePolicy.objects.filter(Q(warehouse=warehouse) | Q(warehouse__isnull=True))
        .order_by(F("warehouse_id").asc(nulls_last=True), "pk")
        .first()
    ) or ReleasePolicy(name="Built-in default")


def local_now(warehouse: Warehouse, now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()).astimezone(zoneinfo.ZoneInfo(warehouse.time_zone or "UTC"))


def carrier_cutoff(order: Order, now: dt.datetime | None = None) -> dt.datetime:
    """Today's pickup cutoff for the order's carrier service at its warehouse (aware datetime)."""
    return pickup_cutoff(order.warehouse, carrier=order.carrier, service_level=order.service_level, now=now)


def pickup_cutoff(
    warehouse: Warehouse, *, carrier: str, service_level: str, now: dt.datetime | None = None
) -> dt.datetime:
    """Today's pickup cutoff for a carrier service at a warehouse, on its clock (the warehouse default without one)."""
    cutoff = next(
        (
            c.cutoff_time
            for c in warehouse.carrier_cutoffs.all()
            if c.carrier == carrier and c.service_level == service_level
        ),
        warehouse.default_cutoff_time,
    )
    if isinstance(cutoff, str):
        cutoff = dt.time.fromisoformat(cutoff)
    today = local_now(warehouse, now)
    return today.replace(hour=cutoff.hour, minute=cutoff.minute, second=0, microsecond=0)


# --- the cutoff watch ----------------------------------------------------------------

CUTOFF_WATCH = Actor.policy("cutoff-watch")
# Orders that still need warehouse work (or a decision) before the carrier can take them.
NOT_READY_STATES = [
    Order.Status.CREDIT_HOLD,
    *Order.ALLOCATION_STATES,
    Order.Status.RELEASED,
    Order.Status.PICKING,
    Order.Status.ON_HOLD,
]


def orders_watch_cutoffs(*, now: dt.datetime | None = None, warning_minutes: int | None = None) -> int:
    """Warn, once, about orders due today that are not packed `warning_minutes` before
    their carrier cutoff (or are past it); returns how many were warned.

    Each warning is an ``order.cutoff_at_risk`` event (the exceptions app raises a carrier-cutoff
    case for transportation from it). The warned day is stored on the order, so a decision to wait
    for the next pickup is not undone by the next sweep.
    """
    from django.conf import settings

    now = now or timezone.now()
    warning = dt.timedelta(minutes=settings.CUTOFF_WARNING_MINUTES if warning_minutes is None else warning_minutes)
    # Every warehouse's today lies between UTC's yesterday and tomorrow. Orders overdue from earlier
    # days were warned on their day; they are the order page's "overdue" list, not a new case each day.
    days = ((now - dt.timedelta(days=1)).date(), (now + dt.timedelta(days=1)).date())
    candidates = (
        Order.objects.filter(status__in=NOT_READY_STATES, requested_ship_date__range=days)
        .exclude(cutoff_warned_on=F("requested_ship_date"))
        .select_related("warehouse")
        .prefetch_related("warehouse__carrier_cutoffs")
        .order_by("pk")
        .iterator(chunk_size=1000)
    )
    warned = 0
    for order in candidates:
        today = local_now(order.warehouse, now).date()
        cutoff = carrier_cutoff(order, now)
        if order.requested_ship_date != today or order.cutoff_warned_on == today or now < cutoff - warning:
            continue
        warned += _warn_cutoff(order.pk, today=today, cutoff=cutoff, now=now)
    return warned


def _warn_cutoff(order_id: int, *, today: dt.date, cutoff: dt.datetime, now: dt.datetime) -> int:
    with transaction.atomic():
        order = _lock_order(order_id)
        if order.status not in NOT_READY_STATES or order.cutoff_warned_on == today:
            return 0  # packed, shipped or warned meanwhile
        minutes_left = int((cutoff - now).total_seconds() // 60)
        carrier = order.carrier or "the carrier"
        local_cutoff = cutoff.strftime("%H:%M")
        if minutes_left >= 0:
            reason = f"Not packed {minutes_left} min before {carrier}'s {local_cutoff} cutoff"
        else:
            reason = f"Not packed at {carrier}'s {local_cutoff} cutoff ({-minutes_left} min ago)"
        order.cutoff_warned_on = today
        stamp_history(order, actor=CUTOFF_WATCH, reason=reason)
        order.save(update_fields=["cutoff_warned_on", "updated_at"])
        _emit(
            events.ORDER_CUTOFF_AT_RISK,
            subject=order,
            actor=CUTOFF_WATCH,
            reason=reason,
            payload=_order_payload(
                order,
                carrier=order.carrier,
                service_level=order.service_level,
                cutoff=cutoff.isoformat(),
                minutes_left=minutes_left,
                missed=minutes_left < 0,
            ),
        )
    return 1


# --- intake --------------------------------------------------------------------------


@dataclass(frozen=True)
class LineInput:
    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal | None = None


def order_create(
    *,
    customer: Customer,
    lines: list[LineInput],
    actor: Actor,
    reason: str = "Order received",
    external_ref: str = "",
    source: str = "portal",
    warehouse: Warehouse | None = None,
    ship_to: dict | None = None,
    requested_ship_date: dt.date | None = None,
    service_level: str = "standard",
    carrier: str = "",
    priority: int = Order.Priority.NORMAL,
    process: bool = False,
    now: dt.datetime | None = None,
    items: dict[str, Item] | None = None,
) -> Order:
    """Record a received order with its lines; unknown SKUs and bad quantities are refused with field errors.

    With `process`, the order is then taken as far as policy allows (order_process) in the same transaction.
    `items`: the active items of the lines by SKU, when the caller has just read them (else read here).
    """
    errors: dict[str, list[str]] = {}
    if not lines:
        errors["lines"] = ["An order needs at least one line."]
    if items is None:
        skus = {line.sku for line in lines}
        items = {item.sku: item for item in Item.objects.filter(sku__in=skus, is_active=True)}
    seen: set[int] = set()
    for index, line in enumerate(lines):
        if line.sku not in items:
            errors[f"lines.{index}.sku"] = [f"Unknown or inactive SKU {line.sku!r}."]
        if line.quantity is None or line.quantity <= 0:
            errors[f"lines.{index}.quantity"] = ["Must be at least 1."]
        if line.line_no in seen:
            errors[f"lines.{index}.line_no"] = [f"Line number {line.line_no} is used twice."]
        seen.add(line.line_no)
    warehouse = warehouse or customer.default_warehouse or Warehouse.objects.filter(is_active=True).first()
    if warehouse is None:
        errors["warehouse"] = ["No active warehouse to fulfil from."]
    if errors:
        raise InvalidInput("The order has invalid values; nothing was created.", fields=errors)
    ship_to = ship_to or {}
    with transaction.atomic():
        order = Order(
            number=_next_number("orchestration_order_number_seq", "SO"),
            source=source,
            external_ref=external_ref,
            customer=customer,
            warehouse=warehouse,
            ship_to_name=ship_to.get("name", ""),
            ship_to_lines="\n".join(ship_to.get("lines", []) or []),
            ship_to_city=ship_to.get("city", ""),
            ship_to_postal_code=ship_to.get("postal_code", ""),
            ship_to_country=(ship_to.get("country", "") or "").upper(),
            requested_ship_date=requested_ship_date,
            service_level=service_level,
            carrier=carrier,
            priority=priority,
        )
        if not order.external_ref:
            order.external_ref = order.number
        order_lines = [
            OrderLine(
                line_no=line.line_no,
                item=items[line.sku],
                quantity=line.quantity,
                unit_price=line.unit_price if line.unit_price is not None else items[line.sku].unit_value,
            )
            for line in lines
        ]
        order.total_value = sum((line.value for line in order_lines), Decimal("0"))
        stamp_history(order, actor=actor, reason=reason)
        order.save()
        for order_line in order_lines:
            order_line.order = order
        OrderLine.objects.bulk_create(order_lines)
        locks_before = _order_locks_taken()
        _emit(events.ORDER_RECEIVED, subject=order, actor=actor, reason=reason, payload=_order_payload(order))
        if process:
            # Inserted in this transaction, the row and its lines are already this transaction's alone:
            # they are read again only if a subscriber of the event changed the order through a service.
            if _order_locks_taken() != locks_before:
                order = _process(order, actor=actor, now=now)
            else:
                order_lines.sort(key=lambda line: line.line_no)
                order = _process(order, actor=actor, now=now, lock=False, lines=order_lines)
    return order


def order_validate(*, order: Order, actor: Actor, reason: str = "Validation") -> Order:
    """Check the order can be fulfilled at all: active items and a complete ship-to address.

    Inactive items reject the order; an incomplete address validates it but puts it on
    hold for customer service (an address-invalid case).
    """
    with transaction.atomic():
        return _validate(_lock_order(order), actor=actor, reason=reason)


def _validate(order: Order, *, actor: Actor, reason: str, lines: list[OrderLine] | None = None) -> Order:
    """order_validate on the order the caller has locked in its transaction (`lines`: as _lines_of)."""
    problems = [
        f"line {line.line_no}: {line.item.sku} is no longer sold"
        for line in _lines_of(order, lines)
        if not line.item.is_active
    ]
    if problems:
        note = "; ".join(problems)
        transition(
            order, "reject", actor=actor, reason=note, update_fields=["rejection_reason", "closed_at"], note=note
        )
        _emit(
            events.ORDER_REJECTED,
            subject=order,
            actor=actor,
            reason=note,
            payload=_order_payload(order, reasons=problems),
        )
        return order
    transition(order, "validate", actor=actor, reason=reason)
    _emit(events.ORDER_VALIDATED, subject=order, actor=actor, reason=reason, payload=_order_payload(order))
    if not order.ship_to_complete:
        missing = [
            label
            for label, value in [
                ("name", order.ship_to_name),
                ("street", order.ship_to_lines),
                ("city", order.ship_to_city),
                ("postal code", order.ship_to_postal_code),
                ("country", order.ship_to_country),
            ]
            if not value
        ]
        note = f"Ship-to address incomplete: missing {', '.join(missing)}"
        transition(order, "hold", actor=actor, reason=note, update_fields=["held_from", "hold_reason"], note=note)
        _emit(
            events.ORDER_ADDRESS_INVALID,
            subject=order,
            actor=actor,
            reason=note,
            payload=_order_payload(order, missing=missing),
        )
    return order


def credit_exposure(customer: Customer) -> Decimal:
    """Open balance plus the value of the customer's orders not yet invoiced."""
    in_flight = Order.objects.filter(customer=customer, status__in=Order.CREDIT_EXPOSURE_STATES).aggregate(
        total=Sum("total_value")
    )["total"] or Decimal("0")
    return customer.open_balance + in_flight


def customer_update_credit(
    *,
    customer: Customer,
    actor: Actor,
    reason: str,
    open_balance: Decimal | None = None,
    credit_limit: Decimal | None = None,
    credit_status: str | None = None,
) -> Customer:
    """Record the customer's credit standing as the ERP (or finance) states it; fields left None stay as they are.

    The open balance is what the ERP has invoiced and not yet been paid: with orders not yet
    invoiced, it is the exposure every credit check weighs. Only a real change is recorded
    (history with who and why, and a ``customer.credit_updated`` event with each change).
    """
    require_reason(reason)
    errors: dict[str, list[str]] = {}
    if credit_limit is not None and credit_limit < 0:
        errors["credit_limit"] = ["Must be zero or more."]
    if credit_status is not None and credit_status not in Customer.CreditStatus.values:
        errors["credit_status"] = [f"One of: {', '.join(Customer.CreditStatus.values)}."]
    for name, value in (("open_balance", open_balance), ("credit_limit", credit_limit)):
        if value is not None and abs(value) >= Decimal("1e12"):
            errors[name] = ["Out of range."]
    if errors:
        raise InvalidInput("The credit figures have invalid values; nothing was changed.", fields=errors)
    wanted = {"open_balance": open_balance, "credit_limit": credit_limit, "credit_status": credit_status}
    with transaction.atomic():
        customer = Customer.objects.select_for_update(no_key=True).get(pk=customer.pk)
        changes = {
            name: [str(getattr(customer, name)), str(value)]
            for name, value in wanted.items()
            if value is not None and value != getattr(customer, name)
        }
        if not changes:
            return customer
        for name in changes:
            setattr(customer, name, wanted[name])
        stamp_history(customer, actor=actor, reason=reason)
        customer.save(update_fields=[*changes, "updated_at"])
        _emit(
            events.CUSTOMER_CREDIT_UPDATED,
            subject=customer,
            actor=actor,
            reason=reason,
            payload={"customer": customer.code, "customer_id": customer.pk, "changes": changes},
        )
    return customer


def order_check_credit(*, order: Order, actor: Actor, reason: str = "Credit check") -> Order:
    """Hold a validated order when the customer is blocked or the order takes them over their limit."""
    with transaction.atomic():
        return _check_credit(_lock_order(order), actor=actor, reason=reason)


def _check_credit(order: Order, *, actor: Actor, reason: str, policy: ReleasePolicy | None = None) -> Order:
    """order_check_credit on the order the caller has locked in its transaction."""
    if order.status != Order.Status.VALIDATED:
        raise TransitionRefused(
            f"Order {order.number} is {order.get_status_display()}; only validated orders go through the credit check."
        )
    customer = Customer.objects.select_for_update(no_key=True).get(pk=order.customer_id)
    policy = policy or release_policy_for(order.warehouse)
    exposure = credit_exposure(customer)
    note = _credit_hold_reason(order, customer, exposure, policy)
    if note:
        transition(order, "hold_for_credit", actor=actor, reason=note, update_fields=["hold_reason"], note=note)
        _emit(
            events.ORDER_CREDIT_HOLD,
            subject=order,
            actor=actor,
            reason=note,
            payload=_order_payload(
                order, exposure=str(exposure), credit_limit=str(customer.credit_limit), hold_reason=note
            ),
        )
    return order


def _credit_hold_reason(order: Order, customer: Customer, exposure: Decimal, policy: ReleasePolicy) -> str:
    """Why the order may not go ahead on the customer's credit (empty: it may)."""
    if customer.credit_status == Customer.CreditStatus.BLOCKED:
        return f"Customer {customer.code} is credit-blocked"
    if policy.credit_hold_over_limit and exposure + order.total_value > customer.credit_limit:
        return (
            f"Order value {amount(order.total_value)} takes {customer.code} to "
            f"{amount(exposure + order.total_value)} against a credit limit of {amount(customer.credit_limit)}"
        )
    return ""


def orders_recheck_credit_holds(*, customer: Customer | int, actor: Actor, reason: str, limit: int = 200) -> int:
    """Let the customer's credit-held orders go ahead that fit their credit now; returns how many did.

    For a change to the customer's credit (a payment the ERP booked, a higher limit, a block
    lifted). Highest priority first, then oldest; an order that does not fit stays held while a
    smaller one after it may go. Only where the warehouse's release policy says so
    (``release_credit_holds_when_clear``). A released order is allocated at once, as finance's
    release allocates it, and its credit-hold case closes as its cause is gone.

    One transaction that locks the customer first, so two re-checks of one customer take turns
    and each weighs the exposure the last one left; then only the held orders that may fit the
    room left (a balance that grew locks none). Nobody locks a held order and then waits for its
    customer: the credit check, which takes an order before its customer, runs on validated orders.
    """
    require_reason(reason)
    customer_id = customer.pk if isinstance(customer, Customer) else customer
    released = 0
    policy_for = functools.cache(release_policy_for)  # one read per warehouse
    with transaction.atomic():
        current = Customer.objects.select_for_update(no_key=True).get(pk=customer_id)
        if current.credit_status == Customer.CreditStatus.BLOCKED:
            return 0
        room = current.credit_limit - credit_exposure(current)
        held = (
            Order.objects.filter(customer_id=customer_id, status=Order.Status.CREDIT_HOLD)
            .order_by("-priority", "created_at", "pk")
            .values_list("pk", "warehouse_id", "total_value")
        )
        for order_id, warehouse_id, value in held[:limit]:
            policy = policy_for(warehouse_id)
            if not policy.release_credit_holds_when_clear or (policy.credit_hold_over_limit and value > room):
                continue
            order = _lock_order(order_id)
            if order.status != Order.Status.CREDIT_HOLD:
                continue  # finance or a cancellation got there first
            exposure = credit_exposure(current)
            if _credit_hold_reason(order, current, exposure, policy):
                continue
            note = (
                f"{reason}: order value {amount(order.total_value)} takes {current.code} to "
                f"{amount(exposure + order.total_value)} within a credit limit of {amount(current.credit_limit)}"
            )
            _release_credit_hold(order, actor=actor, reason=reason, note=note)
            room = current.credit_limit - exposure - order.total_value
            released += 1
    return released


def order_release_credit_hold(*, order: Order, actor: Actor, reason: str) -> Order:
    """Finance lets a credit-held order continue; it is allocated straight away."""
    require_reason(reason)
    with transaction.atomic():
        order = _lock_order(order)
        _release_credit_hold(order, actor=actor, reason=reason, note=reason)
    return order


def _release_credit_hold(order: Order, *, actor: Actor, reason: str, note: str) -> None:
    """The locked order leaves its credit hold (`note` for its history and event) and is allocated at once."""
    transition(order, "release_credit_hold", actor=actor, reason=note, update_fields=["hold_reason"])
    _emit(events.ORDER_CREDIT_RELEASED, subject=order, actor=actor, reason=note, payload=_order_payload(order))
    order_allocate(order=order, actor=actor, reason=f"Allocated after credit release: {reason}")


# --- allocation ----------------------------------------------------------------------


def _allocation_outcome(lines: list[OrderLine]) -> str:
    live = [line for line in lines if line.status != OrderLine.Status.CANCELLED]
    wanted = sum(line.quantity - line.shipped_quantity for line in live)
    allocated = sum(line.allocated_quantity for line in live)
    if live and allocated >= wanted:
        return Order.Status.ALLOCATED
    if allocated > 0:
        return Order.Status.PARTIALLY_ALLOCATED
    return Order.Status.BACKORDERED


def _line_status(line: OrderLine) -> str:
    if line.status in (OrderLine.Status.CANCELLED, OrderLine.Status.SHIPPED, OrderLine.Status.PICKED):
        return line.status
    if line.allocated_quantity >= line.quantity - line.shipped_quantity:
        return OrderLine.Status.ALLOCATED
    if line.allocated_quantity:
        return OrderLine.Status.PARTIAL
    return OrderLine.Status.BACKORDERED


OUTCOME_TRANSITION: dict[str, str] = {
    Order.Status.ALLOCATED: "mark_allocated",
    Order.Status.PARTIALLY_ALLOCATED: "mark_partially_allocated",
    Order.Status.BACKORDERED: "mark_backordered",
}


def order_allocate(*, order: Order, actor: Actor, reason: str = "Allocation") -> Order:
    """Reserve stock for every open line: allocated, partially allocated or backordered.

    A constant number of queries whatever the number of lines: one lock of the order,
    one read of its lines, the inventory reservation (constant), one bulk update of
    the lines, the transition and its history, and the event.
    """
    with transaction.atomic():
        return _allocate(_lock_order(order), actor=actor, reason=reason)


def _allocate(order: Order, *, actor: Actor, reason: str, lines: list[OrderLine] | None = None) -> Order:
    """order_allocate on the order the caller has locked in its transaction (`lines`: as _lines_of)."""
    if order.status not in (Order.Status.VALIDATED, *Order.ALLOCATION_STATES):
        raise TransitionRefused(f"Order {order.number} is {order.get_status_display()}; it cannot be allocated now.")
    lines = _lines_of(order, lines)
    open_lines = [
        line
        for line in lines
        if line.status not in (OrderLine.Status.CANCELLED, OrderLine.Status.SHIPPED, OrderLine.Status.PICKED)
        and line.open_quantity > 0
    ]
    demands = [
        inventory.LineDemand(
            order_line_id=line.pk, order_number=order.number, item_id=line.item_id, quantity=line.open_quantity
        )
        for line in open_lines
    ]
    allocations = inventory.reservation_reserve_lines(
        warehouse=order.warehouse, demands=demands, actor=actor, reason=f"{order.number}: {reason}"
    )
    by_line = {allocation.order_line_id: allocation for allocation in allocations}
    for line in open_lines:
        line.allocated_quantity += by_line[line.pk].reserved
    for line in lines:
        line.status = _line_status(line)
    _save_line_allocations(lines)
    outcome = _allocation_outcome(lines)
    was = order.status
    transition(order, OUTCOME_TRANSITION[outcome], actor=actor, reason=reason)
    _emit(
        events.ORDER_ALLOCATED,
        subject=order,
        actor=actor,
        reason=reason,
        payload=_order_payload(
            order,
            outcome=outcome,
            previous=was,
            lines=[
                {
                    "line_no": line.line_no,
                    "line_id": line.pk,
                    "sku": line.item.sku,
                    "item_id": line.item_id,
                    "quantity": line.quantity,
                    "allocated": line.allocated_quantity,
                    "shortfall": max(0, line.quantity - line.shipped_quantity - line.allocated_quantity),
                    "value": str(line.unit_price * max(0, line.quantity - line.allocated_quantity)),
                }
                for line in lines
                if line.status != OrderLine.Status.CANCELLED
            ],
        ),
    )
    if was in (Order.Status.BACKORDERED, Order.Status.PARTIALLY_ALLOCATED) and outcome == Order.Status.ALLOCATED:
        _emit(events.ORDER_BACKORDER_FILLED, subject=order, actor=actor, reason=reason, payload=_order_payload(order))
    return order


def _save_line_allocations(lines: list[OrderLine]) -> None:
    """Write the lines' allocated quantities and statuses in one UPDATE.

    What ``bulk_update`` would write, without the CASE expression per field and line it
    builds in Python (the costliest statement of taking in an order).
    """
    if not lines:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE orchestration_orderline AS line SET allocated_quantity = given.allocated, status = given.status "
            "FROM unnest(%s::bigint[], %s::integer[], %s::text[]) AS given(id, allocated, status) "
            "WHERE line.id = given.id",
            [
                [line.pk for line in lines],
                [line.allocated_quantity for line in lines],
                [line.status for line in lines],
            ],
        )


# --- release -------------------------------------------------------------------------


def release_blockers(order: Order, *, now: dt.datetime | None = None, policy: ReleasePolicy | None = None) -> list[str]:
    """Why the release policy does not let this order go to the warehouse yet (empty: it may go)."""
    policy = policy or release_policy_for(order.warehouse)
    blockers = []
    if order.status not in (Order.Status.ALLOCATED, Order.Status.PARTIALLY_ALLOCATED):
        blockers.append(f"it is {order.get_status_display().lower()}, not allocated")
    if policy.require_credit_ok and order.customer.credit_status == Customer.CreditStatus.BLOCKED:
        blockers.append("the customer is credit-blocked")
    if order.status == Order.Status.PARTIALLY_ALLOCATED:
        if not policy.allow_partial_release:
            blockers.append("the release policy ships complete orders only")
        elif not order.customer.allows_split_shipment:
            blockers.append("the customer does not accept split shipments")
    if order.requested_ship_date:
        today = local_now(order.warehouse, now).date()
        if (order.requested_ship_date - today).days > policy.ship_window_days:
            blockers.append(
                f"the requested ship date {order.requested_ship_date} is more than {policy.ship_window_days} days away"
            )
    return blockers


def order_release(
    *, order: Order, actor: Actor, reason: str = "Released to warehouse", now: dt.datetime | None = None
) -> Order:
    """Release an allocated order to the warehouse: one pick task per reservation, in walk order."""
    with transaction.atomic():
        return _release(_lock_order(order), actor=actor, reason=reason, now=now)


def _release(
    order: Order, *, actor: Actor, reason: str, now: dt.datetime | None = None, policy: ReleasePolicy | None = None
) -> Order:
    """order_release on the order the caller has locked in its transaction."""
    blockers = release_blockers(order, now=now, policy=policy)
    if blockers:
        raise TransitionRefused(
            f"Order {order.number} cannot be released: {'; '.join(blockers)}.",
            code="release_blocked",
            fields={"release": blockers},
        )
    reservations = list(
        Reservation.objects.filter(
            order_line_id__in=OrderLine.objects.filter(order_id=order.pk).values("pk"),
            status=Reservation.Status.RESERVED,
        )
        .annotate(has_task=Exists(Task.objects.filter(reservation_id=OuterRef("pk"))))
        .select_related("stock_level__location")
        .order_by("stock_level__location__pick_sequence", "pk")
    )
    tasks = [
        Task(
            kind=Task.Kind.PICK,
            warehouse=order.warehouse,
            zone=r.stock_level.location.zone,
            location=r.stock_level.location,
            item_id=r.item_id,
            quantity=r.quantity,
            order=order,
            order_line_id=r.order_line_id,
            reservation=r,
            priority=order.priority,
        )
        for r in reservations
        if not r.has_task
    ]
    Task.objects.bulk_create(tasks)
    transition(order, "release", actor=actor, reason=reason, update_fields=["released_at"])
    _emit(
        events.ORDER_RELEASED,
        subject=order,
        actor=actor,
        reason=reason,
        payload=_order_payload(
            order,
            tasks=[
                {
                    "task_id": t.pk,
                    "zone": t.zone,
                    "location": t.location.code,
                    "sku_id": t.item_id,
                    "quantity": t.quantity,
                }
                for t in tasks
            ],
        ),
    )
    _emit_many(events.TASK_CREATED, items=[(task, _task_payload(task)) for task in tasks], actor=actor, reason=reason)
    return order


def order_process(*, order: Order, actor: Actor, now: dt.datetime | None = None) -> Order:
    """Take a received order as far as policy allows: validate, credit check, allocate, release."""
    with transaction.atomic():
        return _process(order, actor=actor, now=now)


def _process(
    order: Order | int,
    *,
    actor: Actor,
    now: dt.datetime | None = None,
    lock: bool = True,
    lines: list[OrderLine] | None = None,
) -> Order:
    """order_process inside the caller's transaction (`lock=False`: the caller holds the current row,
    and `lines`, when given, are its current lines with their items in line order)."""
    # One lock and one read of the policy for all the steps. A step during which the order was
    # locked again (an in-transaction subscriber, such as a rule, held or re-prioritised it through
    # a service) is followed by a fresh read of the order, and its lines are read again when needed;
    # otherwise the order and its lines are as the step left them.
    if lock:
        order, lines = _lock_order(order), None
    elif not isinstance(order, Order):
        raise TypeError("_process(lock=False) takes the order row the caller holds, not its id")
    policy = release_policy_for(order.warehouse)
    order, lines = _reread_if_changed(
        order, lines, lambda locked: _validate(locked, actor=actor, reason="Validation", lines=lines)
    )
    if order.status == Order.Status.VALIDATED:
        order, lines = _reread_if_changed(
            order, lines, lambda locked: _check_credit(locked, actor=actor, reason="Credit check", policy=policy)
        )
    if order.status == Order.Status.VALIDATED:
        order, lines = _reread_if_changed(
            order, lines, lambda locked: _allocate(locked, actor=actor, reason="Allocation", lines=lines)
        )
    if (
        order.status in (Order.Status.ALLOCATED, Order.Status.PARTIALLY_ALLOCATED)
        and policy.auto_release
        and not release_blockers(order, now=now, policy=policy)
    ):
        order = _release(order, actor=actor, reason="Released by policy", now=now, policy=policy)
    return order


def _reread_if_changed(order: Order, lines: list[OrderLine] | None, step) -> tuple[Order, list[OrderLine] | None]:
    """Run `step` on the locked order; if anything it set off went through an order service, read the row
    again and forget the lines held in memory."""
    before = _order_locks_taken()
    order = step(order)
    if _order_locks_taken() != before:
        return _lock_order(order), None
    return order, lines


def _lines_of(order: Order, lines: list[OrderLine] | None = None) -> list[OrderLine]:
    """The order's lines with their items in line order: `lines` when the caller holds them current, else read."""
    if lines is not None:
        return lines
    return list(order.lines.select_related("item").order_by("line_no"))


# --- holds and cancellation ----------------------------------------------------------


def order_set_carrier(
    *, order: Order | int, carrier: str, actor: Actor, reason: str, service_level: str | None = None
) -> Order:
    """Book an open order with another carrier (and service level); the cutoff watch then looks at the new pickup."""
    require_reason(reason)
    carrier = (carrier or "").strip()
    service_level = (service_level or "").strip()
    if not carrier or len(carrier) > 40:
        raise InvalidInput("Name the carrier to book, up to 40 characters.", fields={"carrier": ["Required."]})
    if len(service_level) > 40:
        raise InvalidInput("The service level is up to 40 characters.", fields={"service_level": ["Too long."]})
    with transaction.atomic():
        order = _lock_order(order)
        if order.status not in Order.OPEN_STATES:
            raise TransitionRefused(
                f"Order {order.number} is {order.get_status_display().lower()}; its carrier can no longer change."
            )
        carrier, service_level = _pickup_service(order.warehouse, carrier, service_level or order.service_level)
        previous = {"previous_carrier": order.carrier, "previous_service_level": order.service_level}
        order.carrier = carrier
        order.service_level = service_level
        order.cutoff_warned_on = None  # the new pickup has a cutoff of its own
        stamp_history(order, actor=actor, reason=reason)
        order.save(update_fields=["carrier", "service_level", "cutoff_warned_on", "updated_at"])
        _emit(
            events.ORDER_CARRIER_CHANGED,
            subject=order,
            actor=actor,
            reason=reason,
            payload=_order_payload(
                order,
                carrier=order.carrier,
                service_level=order.service_level,
                cutoff=carrier_cutoff(order).isoformat(),
                **previous,
            ),
        )
    return order


def _pickup_service(warehouse: Warehouse, carrier: str, service_level: str) -> tuple[str, str]:
    """The carrier service as the warehouse's pickups spell it; refused if it has pickups and none is this one.

    A warehouse with no pickups set up books any carrier (its default cutoff applies).
    """
    pickups = list(warehouse.carrier_cutoffs.all())
    if not pickups:
        return carrier, service_level
    for pickup in pickups:
        if (pickup.carrier.casefold(), pickup.service_level.casefold()) == (
            carrier.casefold(),
            service_level.casefold(),
        ):
            return pickup.carrier, pickup.service_level
    offered = ", ".join(sorted(f"{pickup.carrier} {pickup.service_level}" for pickup in pickups))
    raise InvalidInput(
        f"{warehouse.code} has no pickup for {carrier} {service_level}. Book one it has: {offered}.",
        fields={"carrier": [f"Not collected at {warehouse.code} with this service level."]},
    )


def order_hold(*, order: Order, actor: Actor, reason: str) -> Order:
    """Stop an order before release; its reservations are kept."""
    require_reason(reason)
    with transaction.atomic():
        order = _lock_order(order)
        transition(order, "hold", actor=actor, reason=reason, update_fields=["held_from", "hold_reason"], note=reason)
        _emit(events.ORDER_HELD, subject=order, actor=actor, reason=reason, payload=_order_payload(order))
    return order


def order_unhold(*, order: Order, actor: Actor, reason: str) -> Order:
    """Let a held order continue: it is re-validated as needed and allocated again."""
    require_reason(reason)
    with transaction.atomic():
        order = _lock_order(order)
        transition(order, "unhold", actor=actor, reason=reason, update_fields=["held_from", "hold_reason"])
        _emit(events.ORDER_UNHELD, subject=order, actor=actor, reason=reason, payload=_order_payload(order))
        if not order.ship_to_complete:
            raise TransitionRefused(f"Order {order.number} still has an incomplete ship-to address; correct it first.")
        order_allocate(order=order, actor=actor, reason=f"Allocated after hold released: {reason}")
    return order


def order_update_ship_to(*, order: Order, ship_to: dict, actor: Actor, reason: str) -> Order:
    """Correct the ship-to address (customer service)."""
    require_reason(reason)
    with transaction.atomic():
        order = _lock_order(order)
        if order.status in (Order.Status.SHIPPED, Order.Status.INVOICED, Order.Status.CLOSED, Order.Status.CANCELLED):
            raise TransitionRefused(f"Order {order.number} has left the warehouse; its address can no longer change.")
        order.ship_to_name = ship_to.get("name", order.ship_to_name)
        if "lines" in ship_to:
            order.ship_to_lines = "\n".join(ship_to["lines"])
        order.ship_to_city = ship_to.get("city", order.ship_to_city)
        order.ship_to_postal_code = ship_to.get("postal_code", order.ship_to_postal_code)
        order.ship_to_country = (ship_to.get("country", order.ship_to_country) or "").upper()
        stamp_history(order, actor=actor, reason=reason)
        order.save(
            update_fields=[
                "ship_to_name",
                "ship_to_lines",
                "ship_to_city",
                "ship_to_postal_code",
                "ship_to_country",
                "updated_at",
            ]
        )
    return order


def order_set_priority(*, order: Order, priority: int, actor: Actor, reason: str) -> Order:
    """Change an open order's priority (release sequencing and its tasks' priority follow)."""
    require_reason(reason)
    if priority not in Order.Priority.values:
        raise InvalidInput(f"Priority must be one of {Order.Priority.values}.", fields={"priority": ["1 to 4."]})
    with transaction.atomic():
        order = _lock_order(order)
        if order.status not in Order.OPEN_STATES:
            raise TransitionRefused(f"Order {order.number} is {order.get_status_display()}; its priority is final.")
        if order.priority != priority:
            order.priority = priority
            stamp_history(order, actor=actor, reason=reason)
            order.save(update_fields=["priority", "updated_at"])
            order.tasks.filter(status__in=Task.OPEN_STATES).update(priority=priority)
    return order


def _release_line_reservations(lines: list[OrderLine], *, actor: Actor, reason: str) -> int:
    reservation_ids = list(
        Reservation.objects.filter(
            order_line_id__in=[line.pk for line in lines], status=Reservation.Status.RESERVED
        ).values_list("pk", flat=True)
    )
    return (
        inventory.reservation_release(reservations=reservation_ids, actor=actor, reason=reason)
        if reservation_ids
        else 0
    )


def _cancel_open_tasks(tasks, *, actor: Actor, reason: str) -> None:
    for task in tasks.filter(status__in=Task.OPEN_STATES).order_by("pk").select_for_update(no_key=True):
        transition(
            task, "cancel", actor=actor, reason=reason, update_fields=["outcome_note", "finished_at"], note=reason
        )
        _emit(events.TASK_CANCELLED, subject=task, actor=actor, reason=reason, payload=_task_payload(task))


def order_cancel(*, order: Order, actor: Actor, reason: str) -> Order:
    """Cancel an order that has not been packed: its reservations are released and open tasks cancelled."""
    require_reason(reason)
    with transaction.atomic():
        order = _lock_order(order)
        transition(
            order,
            "cancel",
            actor=actor,
            reason=reason,
            update_fields=["hold_reason", "rejection_reason", "closed_at"],
            note=reason,
        )
        lines = list(order.lines.all())
        _cancel_open_tasks(order.tasks.all(), actor=actor, reason=reason)
        released = _release_line_reservations(lines, actor=actor, reason=f"{order.number} cancelled: {reason}")
        OrderLine.objects.filter(order=order).exclude(status=OrderLine.Status.SHIPPED).update(
            status=OrderLine.Status.CANCELLED, allocated_quantity=0
        )
        _emit(
            events.ORDER_CANCELLED,
            subject=order,
            actor=actor,
            reason=reason,
            payload=_order_payload(order, released=released),
        )
    return order


# --- line-level decisions (used by exception resolutions) ----------------------------


def _lock_line(line: OrderLine | int) -> tuple[Order, OrderLine]:
    line_id = line.pk if isinstance(line, OrderLine) else line
    order_id = OrderLine.objects.values_list("order_id", flat=True).get(pk=line_id)
    order = _lock_order(order_id)
    return order, OrderLine.objects.select_related("item").get(pk=line_id)


def _emit_line_change(order: Order, line: OrderLine, change: str, *, actor: Actor, reason: str, **extra) -> None:
    """Publish order.line_changed: which line of the order changed and how (see events.ORDER_LINE_CHANGED)."""
    _emit(
        events.ORDER_LINE_CHANGED,
        subject=order,
        actor=actor,
        reason=reason,
        payload=_order_payload(order, line_no=line.line_no, sku=line.item.sku, change=change, **extra),
    )


def _revalue(order: Order, *, actor: Actor, reason: str) -> None:
    """Set the locked order's value to what its lines still carry, after a line was cancelled or shortened.

    The value is what the customer's credit carries while the order is open. An order whose
    every line is cancelled keeps its last value, as a cancelled order does.
    """
    live = [line for line in order.lines.all() if line.status != OrderLine.Status.CANCELLED]
    value = sum((line.value for line in live), Decimal("0"))
    if live and value != order.total_value:
        order.total_value = value
        stamp_history(order, actor=actor, reason=reason)
        order.save(update_fields=["total_value", "updated_at"])


def order_line_cancel(*, line: OrderLine, actor: Actor, reason: str) -> OrderLine:
    """Cancel the unshipped rest of a line; its reservations and open tasks go too."""
    require_reason(reason)
    with transaction.atomic():
        order, line = _lock_line(line)
        if line.status in (OrderLine.Status.CANCELLED, OrderLine.Status.SHIPPED):
            raise TransitionRefused(f"Line {line.line_no} of {order.number} is already {line.get_status_display()}.")
        _cancel_open_tasks(Task.objects.filter(order_line=line), actor=actor, reason=reason)
        _release_line_reservations([line], actor=actor, reason=reason)
        line.allocated_quantity = 0
        line.status = OrderLine.Status.CANCELLED if not line.picked_quantity else OrderLine.Status.PICKED
        line.quantity = max(line.picked_quantity, line.shipped_quantity) or line.quantity
        line.save(update_fields=["allocated_quantity", "status", "quantity"])
        _revalue(order, actor=actor, reason=reason)
        _emit_line_change(order, line, "cancelled", actor=actor, reason=reason)
        _settle_order_after_line_change(order, actor=actor, reason=reason)
    return line


def order_line_reduce_to_allocated(*, line: OrderLine, actor: Actor, reason: str) -> OrderLine:
    """Shorten a partly allocated line to what is reserved for it (the customer takes less); the rest is cancelled."""
    require_reason(reason)
    with transaction.atomic():
        order, line = _lock_line(line)
        if line.status in (OrderLine.Status.CANCELLED, OrderLine.Status.SHIPPED, OrderLine.Status.PICKED):
            raise TransitionRefused(f"Line {line.line_no} of {order.number} is already {line.get_status_display()}.")
        if line.shipped_quantity or not 0 < line.allocated_quantity < line.quantity:
            raise TransitionRefused(
                f"Line {line.line_no} of {order.number} has {line.allocated_quantity} of {line.quantity} reserved; "
                "only a partly reserved, unshipped line can be shortened to what is reserved.",
                code="not_partly_reserved",
            )
        dropped = line.quantity - line.allocated_quantity
        line.quantity = line.allocated_quantity
        line.status = _line_status(line)
        line.save(update_fields=["quantity", "status"])
        _revalue(order, actor=actor, reason=reason)
        _emit_line_change(
            order, line, "reduced", actor=actor, reason=reason, quantity=line.quantity, cancelled_quantity=dropped
        )
        _settle_order_after_line_change(order, actor=actor, reason=reason)
    return line


def order_line_backorder(*, line: OrderLine, actor: Actor, reason: str) -> OrderLine:
    """Keep the unallocated rest of a line open as a backorder (filled when stock arrives)."""
    require_reason(reason)
    with transaction.atomic():
        order, line = _lock_line(line)
        if line.status == OrderLine.Status.PARTIAL and not line.allocated_quantity and line.missing_quantity > 0:
            line.status = OrderLine.Status.BACKORDERED  # short-picked: what is missing waits for stock, as decided
            line.save(update_fields=["status"])
        _emit_line_change(order, line, "backordered", actor=actor, reason=reason, open_quantity=line.open_quantity)
    return line


def order_line_substitute(*, line: OrderLine, substitute: Item, actor: Actor, reason: str) -> OrderLine:
    """Ship a ranked substitute for the unallocated rest of a line, if the customer allows substitution."""
    require_reason(reason)
    with transaction.atomic():
        order, line = _lock_line(line)
        if not order.customer.allows_substitution:
            raise TransitionRefused(
                f"Customer {order.customer.code} does not accept substitutes.", code="substitution_not_allowed"
            )
        if not line.item.substitute_links.filter(substitute=substitute).exists():
            raise InvalidInput(
                f"{substitute.sku} is not a listed substitute for {line.item.sku}.",
                fields={"substitute": ["Choose one of the item's substitutes."]},
            )
        missing = line.missing_quantity
        if missing <= 0:
            raise TransitionRefused(f"Line {line.line_no} of {order.number} has nothing left to substitute.")
        line.quantity -= missing
        if line.quantity == 0:
            line.quantity = missing  # keep the constraint: the line is cancelled instead
            line.status = OrderLine.Status.CANCELLED
        line.save(update_fields=["quantity", "status"])
        next_no = (order.lines.order_by("-line_no").values_list("line_no", flat=True).first() or 0) + 1
        new_line = OrderLine.objects.create(
            order=order,
            line_no=next_no,
            item=substitute,
            quantity=missing,
            unit_price=line.unit_price,
            substitute_for=line.item,
        )
        _emit_line_change(
            order,
            line,
            "substituted",
            actor=actor,
            reason=reason,
            substitute=substitute.sku,
            new_line_no=new_line.line_no,
            quantity=missing,
        )
        if order.status in Order.ALLOCATION_STATES:
            order_allocate(order=order, actor=actor, reason=f"Substitute {substitute.sku}: {reason}")
    return new_line


def order_line_reallocate(*, line: OrderLine, actor: Actor, reason: str, warehouse: Warehouse | None = None) -> Order:
    """Try again to reserve the open rest of a line's order (another location; another warehouse moves the order)."""
    require_reason(reason)
    with transaction.atomic():
        order, line = _lock_line(line)
        if warehouse is not None and warehouse.pk != order.warehouse_id:
            if order.status not in (Order.Status.BACKORDERED, Order.Status.VALIDATED):
                raise TransitionRefused("Only an order with nothing reserved can move to another warehouse.")
            order.warehouse = warehouse
            stamp_history(order, actor=actor, reason=reason)
            order.save(update_fields=["warehouse", "updated_at"])
        if order.status in (Order.Status.RELEASED, Order.Status.PICKING):
            return _reallocate_released_line(order, line, actor=actor, reason=reason)
        return order_allocate(order=order, actor=actor, reason=reason)


def _reallocate_released_line(order: Order, line: OrderLine, *, actor: Actor, reason: str) -> Order:
    """After a short pick on a released order: reserve the missing units elsewhere and add pick tasks."""
    missing = line.missing_quantity
    if missing <= 0:
        raise TransitionRefused(f"Line {line.line_no} of {order.number} is not missing anything.")
    allocation = inventory.reservation_reserve_lines(
        warehouse=order.warehouse,
        actor=actor,
        reason=reason,
        demands=[
            inventory.LineDemand(
                order_line_id=line.pk, order_number=order.number, item_id=line.item_id, quantity=missing
            )
        ],
    )[0]
    if not allocation.reserved:
        raise TransitionRefused(
            f"No other stock of {line.item.sku} is available at {order.warehouse.code}.", code="insufficient_stock"
        )
    line.allocated_quantity += allocation.reserved
    line.status = OrderLine.Status.ALLOCATED if allocation.shortfall == 0 else OrderLine.Status.PARTIAL
    line.save(update_fields=["allocated_quantity", "status"])
    for reservation in allocation.reservations:
        location = reservation.stock_level.location
        task = Task.objects.create(
            kind=Task.Kind.PICK,
            warehouse=order.warehouse,
            zone=location.zone,
            location=location,
            item_id=line.item_id,
            quantity=reservation.quantity,
            order=order,
            order_line=line,
            reservation=reservation,
            priority=order.priority,
        )
        _emit(events.TASK_CREATED, subject=task, actor=actor, reason=reason, payload=_task_payload(task))
    _emit_line_change(order, line, "reallocated", actor=actor, reason=reason, quantity=allocation.reserved)
    return order


def order_ship_partial(*, order: Order, actor: Actor, reason: str) -> Order:
    """Ship what is picked now and cancel what is missing (the customer accepted a partial shipment)."""
    require_reason(reason)
    with transaction.atomic():
        order = _lock_order(order)
        for line in order.lines.exclude(status__in=[OrderLine.Status.CANCELLED, OrderLine.Status.SHIPPED]):
            if (
                line.picked_quantity < line.quantity
                and not Task.objects.filter(order_line=line, status__in=Task.OPEN_STATES).exists()
            ):
                order_line_cancel(line=line, actor=actor, reason=f"Partial shipment: {reason}")
        _settle_order_after_line_change(order, actor=actor, reason=reason)
    return order


def _settle_order_after_line_change(order: Order, *, actor: Actor, reason: str) -> None:
    """After lines change: re-grade allocation states, or pack a released order whose picking is done."""
    order.refresh_from_db()
    lines = list(order.lines.all())
    if all(line.status == OrderLine.Status.CANCELLED for line in lines):
        if order.status in Order.CANCELLABLE:
            order_cancel(order=order, actor=actor, reason=f"Every line cancelled: {reason}")
        return
    if order.status in Order.ALLOCATION_STATES:
        outcome = _allocation_outcome(lines)
        if outcome != order.status:
            transition(order, OUTCOME_TRANSITION[outcome], actor=actor, reason=reason)
    elif order.status in (Order.Status.RELEASED, Order.Status.PICKING):
        _maybe_create_pack_task(order, actor=actor)


# --- tasks ---------------------------------------------------------------------------


def _task_payload(task: Task, **extra) -> dict:
    return {
        "task_id": task.pk,
        "kind": task.kind,
        "status": task.status,
        "warehouse_id": task.warehouse_id,
        "zone": task.zone,
        "location_id": task.location_id,
        "item_id": task.item_id,
        "quantity": task.quantity,
        "done_quantity": task.done_quantity,
        "order_id": task.order_id,
        "performer": task.performer,
        "equipment": task.equipment_code,
        "instruction_seq": task.instruction_seq,
        **extra,
    }


def _lock_task(task: Task | int) -> Task:
    pk = task.pk if isinstance(task, Task) else task
    order_id = Task.objects.values_list("order_id", flat=True).get(pk=pk)
    if order_id:  # the order before the task: the fixed lock order
        Order.objects.select_for_update(no_key=True).filter(pk=order_id).first()
    return Task.objects.select_for_update(no_key=True).get(pk=pk)


def task_dispatch(
    *,
    task: Task,
    actor: Actor,
    reason: str = "Dispatched",
    performer: str = Task.Performer.PERSON,
    equipment_code: str = "",
    ack_deadline: dt.datetime | None = None,
) -> Task:
    """Hand a task to a person or (as a lease with an acknowledgement deadline) to a machine via the WCS."""
    with transaction.atomic():
        task = _lock_task(task)
        transition(
            task,
            "dispatch",
            actor=actor,
            reason=reason,
            update_fields=["performer", "equipment_code", "ack_deadline", "instruction_seq", "dispatch_attempts"],
            performer=performer,
            equipment_code=equipment_code,
            ack_deadline=ack_deadline,
        )
        _emit(events.TASK_DISPATCHED, subject=task, actor=actor, reason=reason, payload=_task_payload(task))
    return task


def task_acknowledge(
    *, task: Task, actor: Actor, reason: str = "Acknowledged", instruction_seq: int | None = None
) -> Task:
    """The performer accepted the task; a machine's acknowledgement must match the current instruction."""
    with transaction.atomic():
        task = _lock_task(task)
        _check_instruction(task, instruction_seq)
        transition(task, "acknowledge", actor=actor, reason=reason, update_fields=["ack_deadline"])
        _emit(events.TASK_ACKNOWLEDGED, subject=task, actor=actor, reason=reason, payload=_task_payload(task))
    return task


def _check_instruction(task: Task, instruction_seq: int | None) -> None:
    if instruction_seq is not None and instruction_seq != task.instruction_seq:
        raise TransitionRefused(
            f"Task {task.pk} is at instruction {task.instruction_seq}; an update for {instruction_seq} is stale.",
            code="stale_instruction",
        )


def task_start(*, task: Task, actor: Actor, reason: str = "Started", instruction_seq: int | None = None) -> Task:
    """Work on the task began; the order moves to picking with its first pick."""
    with transaction.atomic():
        task = _lock_task(task)
        _check_instruction(task, instruction_seq)
        transition(task, "start", actor=actor, reason=reason, update_fields=["ack_deadline", "started_at"])
        if task.kind == Task.Kind.PICK and task.order_id:
            order = Order.objects.get(pk=task.order_id)
            if order.status == Order.Status.RELEASED:
                transition(order, "start_picking", actor=actor, reason=f"First pick started (task {task.pk})")
        _emit(events.TASK_STARTED, subject=task, actor=actor, reason=reason, payload=_task_payload(task))
    return task


def task_complete(
    *,
    task: Task,
    done_quantity: int | None = None,
    actor: Actor,
    reason: str = "Completed",
    instruction_seq: int | None = None,
) -> Task:
    """Finish a task. A pick moves stock through the ledger; fewer units than asked makes it a short pick."""
    with transaction.atomic():
        task = _lock_task(task)
        _check_instruction(task, instruction_seq)
        done = task.quantity if done_quantity is None else done_quantity
        if done < 0 or done > task.quantity:
            raise InvalidInput(
                f"Done quantity must be between 0 and {task.quantity}.",
                fields={"done_quantity": [f"Between 0 and {task.quantity}."]},
            )
        if task.status == Task.Status.CREATED:
            raise TransitionRefused(f"Task {task.pk} is created but was never dispatched; dispatch or start it first.")
        if task.kind == Task.Kind.PICK:
            return _complete_pick(task, done, actor=actor, reason=reason)
        _mark_completed(task, done, actor=actor, reason=reason)
        if task.kind == Task.Kind.PACK and task.order is not None:
            shipment_pack(order=task.order, actor=actor, reason=f"Packed (task {task.pk})")
    return task


def _mark_completed(task: Task, done: int, *, actor: Actor, reason: str) -> None:
    """The (locked) task's completion with `done` units: its transition, history and event."""
    transition(
        task, "complete", actor=actor, reason=reason, update_fields=["done_quantity", "finished_at"], done_quantity=done
    )
    _emit(events.TASK_COMPLETED, subject=task, actor=actor, reason=reason, payload=_task_payload(task))


def _complete_pick(task: Task, done: int, *, actor: Actor, reason: str) -> Task:
    if task.reservation is None or task.order_line_id is None:
        raise TransitionRefused(
            f"Pick task {task.pk} holds no reservation for an order line, so it has no stock to record as picked; "
            "cancel it and release the order again.",
            code="pick_without_reservation",
        )
    order = Order.objects.select_related("customer", "warehouse").get(pk=task.order_id) if task.order_id else None
    if order is not None and order.status == Order.Status.RELEASED:
        transition(order, "start_picking", actor=actor, reason=f"Picking under way (task {task.pk})")
    result = inventory.reservation_pick(
        reservation=task.reservation,
        picked_quantity=done,
        actor=actor,
        reason=f"Pick task {task.pk}: {reason}",
        source_ref=f"task:{task.pk}",
    )
    line = OrderLine.objects.select_related("item").get(pk=task.order_line_id)
    line.picked_quantity += done
    line.allocated_quantity -= task.quantity
    if line.picked_quantity >= line.quantity - line.shipped_quantity:
        line.status = OrderLine.Status.PICKED
    elif line.missing_quantity > 0:
        line.status = OrderLine.Status.PARTIAL  # short: units neither picked nor reserved wait for a decision
    line.save(update_fields=["picked_quantity", "allocated_quantity", "status"])
    if result.shortfall:
        note = f"Short by {result.shortfall}: picked {done} of {task.quantity}"
        transition(
            task,
            "short",
            actor=actor,
            reason=note,
            update_fields=["done_quantity", "outcome_note", "finished_at"],
            done_quantity=done,
            note=note,
        )
        _emit(
            events.TASK_SHORT,
            subject=task,
            actor=actor,
            reason=note,
            payload=_task_payload(
                task,
                order=order.number if order else "",
                order_line_id=line.pk,
                line_no=line.line_no,
                sku=line.item.sku,
                location=task.location.code if task.location else "",
                requested=task.quantity,
                picked=done,
                shortfall=result.shortfall,
                count_id=result.count.pk if result.count else None,
                value=str(line.unit_price * result.shortfall),
                customer=order.customer.code if order else "",
                service_tier=order.customer.service_tier if order else "",
                allows_split_shipment=order.customer.allows_split_shipment if order else False,
                allows_substitution=order.customer.allows_substitution if order else False,
            ),
        )
    else:
        _mark_completed(task, done, actor=actor, reason=reason)
    if order is not None and not result.shortfall:
        _maybe_create_pack_task(order, actor=actor)
    return task


def _maybe_create_pack_task(order: Order, *, actor: Actor) -> Task | None:
    """When no pick of the order is open and every live line is fully picked, create its pack task."""
    if order.tasks.filter(kind=Task.Kind.PICK, status__in=Task.OPEN_STATES).exists():
        return None
    if order.tasks.filter(kind=Task.Kind.PACK).exclude(status=Task.Status.CANCELLED).exists():
        return None
    lines = list(order.lines.exclude(status=OrderLine.Status.CANCELLED))
    if not lines or any(line.picked_quantity + line.shipped_quantity < line.quantity for line in lines):
        return None  # something is missing: the short-pick case decides (reallocate, ship partial, …)
    task = Task(
        kind=Task.Kind.PACK,
        warehouse=order.warehouse,
        zone="PACK",
        order=order,
        quantity=sum(line.picked_quantity for line in lines),
        priority=order.priority,
    )
    stamp_history(task, actor=actor, reason="Picking complete")
    task.save()
    _emit(events.TASK_CREATED, subject=task, actor=actor, reason="Picking complete", payload=_task_payload(task))
    return task


def task_fail(*, task: Task, actor: Actor, reason: str) -> Task:
    """The task could not be done (equipment fault, blocked location); the reservation stays for a retry."""
    require_reason(reason)
    with transaction.atomic():
        task = _lock_task(task)
        transition(task, "fail", actor=actor, reason=reason, update_fields=["outcome_note", "finished_at"], note=reason)
        _emit(events.TASK_FAILED, subject=task, actor=actor, reason=reason, payload=_task_payload(task))
    return task


def task_retry(*, task: Task, actor: Actor, reason: str) -> Task:
    """Replace a failed task by a fresh one for the same work."""
    require_reason(reason)
    with transaction.atomic():
        task = _lock_task(task)
        if task.status != Task.Status.FAILED:
            raise TransitionRefused(f"Task {task.pk} is {task.get_status_display()}; only failed tasks are retried.")
        clone = Task.objects.create(
            kind=task.kind,
            warehouse=task.warehouse,
            zone=task.zone,
            location=task.location,
            to_location=task.to_location,
            item=task.item,
            quantity=task.quantity,
            order=task.order,
            order_line=task.order_line,
            reservation=task.reservation,
            priority=task.priority,
        )
        _emit(
            events.TASK_CREATED,
            subject=clone,
            actor=actor,
            reason=reason,
            payload=_task_payload(clone, retry_of=task.pk),
        )
    return clone


def task_cancel(*, task: Task, actor: Actor, reason: str) -> Task:
    require_reason(reason)
    with transaction.atomic():
        task = _lock_task(task)
        transition(
            task, "cancel", actor=actor, reason=reason, update_fields=["outcome_note", "finished_at"], note=reason
        )
        _emit(events.TASK_CANCELLED, subject=task, actor=actor, reason=reason, payload=_task_payload(task))
    return task


def task_fall_back_to_manual(*, task: Task, actor: Actor, reason: str) -> Task:
    """A machine hand-off that was not acknowledged (or whose machine faulted) becomes manual work."""
    require_reason(reason)
    with transaction.atomic():
        task = _lock_task(task)
        transition(
            task,
            "fall_back_to_manual",
            actor=actor,
            reason=reason,
            update_fields=["performer", "equipment_code", "ack_deadline", "outcome_note", "instruction_seq"],
            note=reason,
        )
        _emit(events.TASK_FELL_BACK, subject=task, actor=actor, reason=reason, payload=_task_payload(task))
    return task


def task_assign(*, task: Task, assignee, actor: Actor, reason: str = "Assigned") -> Task:
    with transaction.atomic():
        task = _lock_task(task)
        if task.status not in Task.OPEN_STATES:
            raise TransitionRefused(f"Task {task.pk} is {task.get_status_display()}; it cannot be assigned.")
        task.assignee = assignee
        stamp_history(task, actor=actor, reason=reason)
        task.save(update_fields=["assignee", "updated_at"])
    return task


# --- shipments -----------------------------------------------------------------------


def shipment_pack(*, order: Order, actor: Actor, reason: str = "Packed", packages: int = 1) -> Shipment:
    """Pack what is picked and not yet shipped into a shipment, ready for the carrier."""
    with transaction.atomic():
        order = _lock_order(order)
        lines = [
            line
            for line in order.lines.select_related("item").exclude(status=OrderLine.Status.CANCELLED)
            if line.picked_quantity > line.shipped_quantity
        ]
        if not lines:
            raise TransitionRefused(f"Order {order.number} has nothing picked to pack.")
        shipment = Shipment(
            number=_next_number("orchestration_shipment_number_seq", "SH"),
            order=order,
            warehouse=order.warehouse,
            carrier=order.carrier,
            service_level=order.service_level,
            packages=packages,
        )
        stamp_history(shipment, actor=actor, reason=reason)
        shipment.save()
        ShipmentLine.objects.bulk_create(
            [
                ShipmentLine(shipment=shipment, order_line=line, quantity=line.picked_quantity - line.shipped_quantity)
                for line in lines
            ]
        )
        transition(order, "mark_packed", actor=actor, reason=reason)
        _emit(
            events.SHIPMENT_PACKED,
            subject=shipment,
            actor=actor,
            reason=reason,
            payload={
                **_order_payload(order),
                "shipment": shipment.number,
                "shipment_id": shipment.pk,
                "carrier": shipment.carrier,
                "service_level": shipment.service_level,
                "packages": packages,
                "ship_to": {
                    "name": order.ship_to_name,
                    "lines": order.ship_to_lines.splitlines(),
                    "city": order.ship_to_city,
                    "postal_code": order.ship_to_postal_code,
                    "country": order.ship_to_country,
                },
                "lines": [
                    {
                        "line_no": line.line_no,
                        "sku": line.item.sku,
                        "quantity": line.picked_quantity - line.shipped_quantity,
                    }
                    for line in lines
                ],
            },
        )
        _emit(events.ORDER_PACKED, subject=order, actor=actor, reason=reason, payload=_order_payload(order))
        _finish_pack_tasks(order, shipment, actor=actor)
    return shipment


def _finish_pack_tasks(order: Order, shipment: Shipment, *, actor: Actor) -> None:
    """The order's pack task, when the packing was reported without it (the WMS packed the order), is done.

    The caller holds the order, which whoever else changes the task locks first: the task is this
    transaction's to take, and one a person finished meanwhile is no longer open.
    """
    reason = f"Packed as shipment {shipment.number}"
    for task in Task.objects.select_for_update(no_key=True).filter(
        order=order, kind=Task.Kind.PACK, status__in=Task.OPEN_STATES
    ):
        if task.status != Task.Status.IN_PROGRESS:
            transition(task, "start", actor=actor, reason=reason, update_fields=["ack_deadline", "started_at"])
        _mark_completed(task, task.quantity, actor=actor, reason=reason)


def shipment_ship(
    *, shipment: Shipment, carrier: str, tracking_number: str, actor: Actor, reason: str = "Shipped"
) -> Shipment:
    """The carrier collected the shipment: lines count as shipped and the ERP is told (invoice trigger)."""
    carrier, tracking_number = (carrier or "").strip(), (tracking_number or "").strip()
    if not tracking_number or len(tracking_number) > 80:
        raise InvalidInput(
            "A tracking number of up to 80 characters is required to ship.", fields={"tracking_number": ["Required."]}
        )
    if not carrier or len(carrier) > 40:
        raise InvalidInput(
            "Name the carrier that collected it, up to 40 characters.", fields={"carrier": ["Required."]}
        )
    with transaction.atomic():
        order = _lock_order(shipment.order_id)
        shipment = Shipment.objects.select_for_update(no_key=True).get(pk=shipment.pk)
        transition(
            shipment,
            "ship",
            actor=actor,
            reason=reason,
            update_fields=["carrier", "tracking_number", "shipped_at"],
            carrier=carrier,
            tracking_number=tracking_number,
        )
        shipped_lines = list(shipment.lines.select_related("order_line__item"))
        for shipment_line in shipped_lines:
            line = shipment_line.order_line
            line.shipped_quantity += shipment_line.quantity
            line.picked_quantity -= shipment_line.quantity
            line.status = OrderLine.Status.SHIPPED if line.shipped_quantity >= line.quantity else line.status
            line.save(update_fields=["shipped_quantity", "picked_quantity", "status"])
        if order.status == Order.Status.PACKED:
            order.carrier = order.carrier or carrier
            transition(order, "mark_shipped", actor=actor, reason=reason, update_fields=["shipped_at", "carrier"])
        _emit(
            events.SHIPMENT_SHIPPED,
            subject=shipment,
            actor=actor,
            reason=reason,
            payload={
                **_order_payload(order),
                "shipment": shipment.number,
                "shipment_id": shipment.pk,
                "carrier": carrier,
                "tracking_number": tracking_number,
                "shipped_at": shipment.shipped_at.isoformat() if shipment.shipped_at else None,
                "lines": [
                    {
                        "line_no": sl.order_line.line_no,
                        "sku": sl.order_line.item.sku,
                        "quantity": sl.quantity,
                        "unit_price": str(sl.order_line.unit_price),
                    }
                    for sl in shipped_lines
                ],
            },
        )
        _emit(events.ORDER_SHIPPED, subject=order, actor=actor, reason=reason, payload=_order_payload(order))
    return shipment


def shipment_confirm(*, shipment: Shipment, actor: Actor, reason: str = "Delivery confirmed by carrier") -> Shipment:
    """The carrier delivered the shipment; an invoiced order whose every shipment is delivered closes."""
    with transaction.atomic():
        order = _lock_order(shipment.order_id)
        shipment = Shipment.objects.select_for_update(no_key=True).get(pk=shipment.pk)
        transition(shipment, "confirm", actor=actor, reason=reason, update_fields=["confirmed_at"])
        _emit(
            events.SHIPMENT_CONFIRMED,
            subject=shipment,
            actor=actor,
            reason=reason,
            payload={
                "shipment": shipment.number,
                "shipment_id": shipment.pk,
                "order": order.number,
                "order_id": shipment.order_id,
            },
        )
        _close_if_settled(order, actor=actor)
    return shipment


def _close_if_settled(order: Order, *, actor: Actor) -> None:
    """Close the (locked) order once it is invoiced and every one of its shipments was delivered."""
    if order.status != Order.Status.INVOICED:
        return
    shipments = order.shipments.aggregate(
        all=Count("pk"), undelivered=Count("pk", filter=~Q(status=Shipment.Status.CONFIRMED))
    )
    if not shipments["all"] or shipments["undelivered"]:
        return
    reason = "Invoiced, and every shipment delivered"
    transition(order, "close", actor=actor, reason=reason, update_fields=["closed_at"])
    _emit(events.ORDER_CLOSED, subject=order, actor=actor, reason=reason, payload=_order_payload(order))


def order_invoice(*, order: Order, actor: Actor, reason: str = "Invoiced", invoice: str = "") -> Order:
    """Mark the order invoiced (`invoice`: the ERP's invoice number); refused while any shipment is not yet shipped.

    From here the order's value counts against the customer's credit through the ERP's open
    balance, no longer as an order in flight.
    """
    with transaction.atomic():
        order = _lock_order(order)
        if order.shipments.filter(status=Shipment.Status.PACKED).exists():
            raise TransitionRefused(f"Order {order.number} has a shipment not yet collected; invoice after shipping.")
        transition(order, "mark_invoiced", actor=actor, reason=reason)
        _emit(
            events.ORDER_INVOICED,
            subject=order,
            actor=actor,
            reason=reason,
            payload=_order_payload(order, **({"invoice": invoice} if invoice else {})),
        )
        _close_if_settled(order, actor=actor)
    return order


def order_close(*, order: Order, actor: Actor, reason: str = "Closed") -> Order:
    with transaction.atomic():
        order = _lock_order(order)
        transition(order, "close", actor=actor, reason=reason, update_fields=["closed_at"])
        _emit(events.ORDER_CLOSED, subject=order, actor=actor, reason=reason, payload=_order_payload(order))
    return order


# --- background decisions ------------------------------------------------------------


def orders_fill_backorders(*, item_id: int, warehouse_id: int, actor: Actor, limit: int = 50) -> int:
    """Stock arrived: try again to allocate waiting orders for that item, in release order."""
    waiting = list(
        Order.objects.filter(
            Exists(OrderLine.objects.filter(order_id=OuterRef("pk"), item_id=item_id)),
            warehouse_id=warehouse_id,
            status__in=[Order.Status.BACKORDERED, Order.Status.PARTIALLY_ALLOCATED],
        ).in_release_order()[:limit]
    )
    filled = 0
    for order in waiting:
        try:
            order = order_allocate(order=order, actor=actor, reason="Stock arrived")
        except DomainError:
            continue
        filled += order.status == Order.Status.ALLOCATED
    return filled


def orders_fill_backorders_due(*, actor: Actor, limit: int = 200) -> int:
    """Allocate waiting orders wherever their item has free stock again (arrivals, cancellations, counts).

    One read finds each (item, warehouse) with a backordered or partly allocated line and stock
    free to allocate there; each is then filled in release order. Returns the orders now fully allocated.
    """
    free_stock = StockLevel.objects.filter(  # what the reservation statement may take (its candidate rows)
        item_id=OuterRef("item_id"),
        location__warehouse_id=OuterRef("order__warehouse_id"),
        location__kind__in=Location.ALLOCATABLE_KINDS,
        location__is_active=True,
        location__warehouse__is_active=True,
        on_hand__gt=F("reserved") + F("quarantined"),
    )
    waiting = (
        OrderLine.objects.filter(
            order__status__in=[Order.Status.BACKORDERED, Order.Status.PARTIALLY_ALLOCATED],
            status__in=[OrderLine.Status.BACKORDERED, OrderLine.Status.PARTIAL],
        )
        .filter(Exists(free_stock))
        .values_list("item_id", "order__warehouse_id")
        .distinct()[:limit]
    )
    return sum(
        orders_fill_backorders(item_id=item_id, warehouse_id=warehouse_id, actor=actor)
        for item_id, warehouse_id in list(waiting)
    )


def orders_release_due(*, actor: Actor, now: dt.datetime | None = None, limit: int = 200, examine: int = 5000) -> int:
    """Release every order the policy now allows (its ship window opened, its stock came), highest priority first.

    Looks at up to `examine` waiting orders, so orders still blocked (due next week) do not keep
    those behind them waiting; releases at most `limit`.
    """
    policy_for = functools.cache(release_policy_for)  # one read per warehouse
    released = 0
    waiting = Order.objects.releasable().select_related("customer", "warehouse").in_release_order()[:examine]
    for order in waiting.iterator(chunk_size=500):
        policy = policy_for(order.warehouse_id)
        if not policy.auto_release or release_blockers(order, now=now, policy=policy):
            continue
        try:
            order_release(order=order, actor=actor, reason="Released by policy", now=now)
        except DomainError:
            continue
        released += 1
        if released >= limit:
            break
    return released
