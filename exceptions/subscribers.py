"""Cases raised and closed by the core's events, inside the publishing transaction.

In-transaction subscribers: a case commits (or rolls back) with the change that caused it,
and a cause that disappears takes its case along in the same transaction. Each handler runs
in a savepoint and logs instead of failing the domain change if the case cannot be written
(e.g. an operations admin deleted the type): losing a case must never undo a pick.
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

from django.db import transaction

from exceptions import services
from portal.actors import Actor
from portal.domain import DomainError
from portal.events import subscribe

logger = logging.getLogger(__name__)

# Case types whose cause is an order (or one of its lines / tasks): they go when the order is cancelled.
ORDER_BOUND_TYPES = [
    "short_pick",
    "partial_shipment_decision",
    "credit_hold",
    "address_invalid",
    "substitution_approval",
    "carrier_cutoff_miss",
]
# Types whose cause is missing stock: they go when the order is fully allocated again.
STOCK_WAIT_TYPES = ["partial_shipment_decision", "substitution_approval"]


def event_actor(event) -> Actor:
    """The actor who published the event (a case raised from it is theirs: segregation of duties reads it)."""
    kind, _, name = (event.actor or "system:unknown").partition(":")
    return Actor(kind=kind or "system", name=name or "unknown")


def _warehouse(warehouse_id):
    if not warehouse_id:
        return None
    from inventory.models import Warehouse

    return Warehouse.objects.filter(pk=warehouse_id).first()


def _safely(what: str, event, action) -> None:
    try:
        with transaction.atomic():
            action()
    except DomainError as error:
        logger.warning("exception case not written", extra={"what": what, "event_id": event.pk, "error": error.message})
    except Exception:  # rolled back to the savepoint: the domain change that published the event stands
        logger.exception("exception case not written", extra={"what": what, "event_id": event.pk})


def _raise(event, **kwargs) -> None:
    kwargs.setdefault("actor", event_actor(event))
    kwargs.setdefault("reason", event.reason or event.name)
    kwargs.setdefault("source_event_id", event.pk)
    kwargs.setdefault("now", event.occurred_at)
    _safely(kwargs["type_code"], event, lambda: services.case_raise(**kwargs))


def _amount(value) -> Decimal:
    try:
        return Decimal(str(value or "0"))
    except ArithmeticError:
        return Decimal("0")


@subscribe("task.short_picked", in_transaction=True, key="exceptions.short_pick")
def short_pick(event) -> None:
    """A pick came up short: the line needs a decision (reallocate, backorder, ship partial, substitute, cancel)."""
    payload = event.payload or {}
    line_id = payload.get("order_line_id")
    order = payload.get("order", "")
    subject = ("orchestration.orderline", str(line_id)) if line_id else ("orchestration.task", event.subject_id)
    _raise(
        event,
        type_code="short_pick",
        subject_type=subject[0],
        subject_id=subject[1],
        subject_label=f"{order} line {payload.get('line_no')} ({payload.get('sku', '')})" if order else "",
        summary=(
            f"Short pick on {order or 'task ' + str(payload.get('task_id'))} line {payload.get('line_no')}: "
            f"{payload.get('picked')} of {payload.get('requested')} × {payload.get('sku')} found at "
            f"{payload.get('location') or 'the location'} ({payload.get('shortfall')} missing)"
        ),
        context={
            key: payload.get(key)
            for key in [
                "task_id",
                "order_id",
                "order_line_id",
                "line_no",
                "sku",
                "location",
                "requested",
                "picked",
                "shortfall",
                "count_id",
                "customer",
                "allows_split_shipment",
                "allows_substitution",
                "equipment",
                "performer",
            ]
        },
        materiality=_amount(payload.get("value")),
        warehouse=_warehouse(payload.get("warehouse_id")),
        customer_tier=payload.get("service_tier", ""),
        order_number=order,
    )


@subscribe("inventory.receiving_variance", in_transaction=True, key="exceptions.receiving_variance")
def receiving_variance(event) -> None:
    """A receipt closed with lines beyond tolerance: one case per receipt, a line per occurrence."""
    from exceptions.models import Case

    payload = event.payload or {}
    receipt_id = str(payload.get("receipt_id") or event.subject_id)
    line = {key: payload.get(key) for key in ["line_no", "sku", "expected", "received", "variance", "value"]}
    # The value at stake is the receipt's: every flagged line so far (the receipt row is locked by its close).
    earlier = (
        Case.objects.active()
        .filter(type__code="receiving_variance", subject_type="inventory.receipt", subject_id=receipt_id)
        .values_list("context", flat=True)
        .first()
    )
    lines = {**((earlier or {}).get("lines") or {}), str(payload.get("line_no")): line}
    _raise(
        event,
        type_code="receiving_variance",
        subject_type="inventory.receipt",
        subject_id=receipt_id,
        subject_label=f"Receipt {payload.get('receipt')}",
        summary=(
            f"Receipt {payload.get('receipt')} from {payload.get('supplier')}: line {payload.get('line_no')} "
            f"{payload.get('sku')} expected {payload.get('expected')}, received {payload.get('received')}"
        ),
        context={
            "receipt": payload.get("receipt"),
            "receipt_id": payload.get("receipt_id"),
            "supplier": payload.get("supplier"),
            "lines": {str(payload.get("line_no")): line},
        },
        materiality=sum((_amount(entry.get("value")) for entry in lines.values()), Decimal("0")),
        warehouse=_warehouse(payload.get("warehouse_id")),
    )


@subscribe("inventory.count_variance", in_transaction=True, key="exceptions.count_variance")
def count_variance(event) -> None:
    """A count beyond tolerance waits for an approver who is not the counter."""
    payload = event.payload or {}
    _raise(
        event,
        type_code="count_variance",
        subject_type="inventory.cyclecount",
        subject_id=str(payload.get("count_id") or event.subject_id),
        subject_label=f"Count {payload.get('count_id')}: {payload.get('sku')} at {payload.get('location')}",
        summary=(
            f"{payload.get('sku')} at {payload.get('location')}: system {payload.get('expected')}, counted "
            f"{payload.get('counted')} ({payload.get('variance'):+d})"
            if isinstance(payload.get("variance"), int)
            else f"Count variance on {payload.get('sku')} at {payload.get('location')}"
        ),
        context={
            key: payload.get(key)
            for key in ["count_id", "sku", "item_id", "location", "expected", "counted", "variance", "counted_by"]
        },
        materiality=_amount(payload.get("value")),
        warehouse=_warehouse(payload.get("warehouse_id")),
    )


def _order_case(event, *, type_code: str, summary: str, context: dict | None = None) -> None:
    payload = event.payload or {}
    _raise(
        event,
        type_code=type_code,
        subject_type="orchestration.order",
        subject_id=str(payload.get("order_id") or event.subject_id),
        subject_label=payload.get("order", ""),
        summary=summary,
        context={
            "order_id": payload.get("order_id"),
            "customer": payload.get("customer"),
            "order_status": payload.get("status"),
            **(context or {}),
        },
        materiality=_amount(payload.get("value")),
        warehouse=_warehouse(payload.get("warehouse_id")),
        customer_tier=payload.get("service_tier", ""),
        order_number=payload.get("order", ""),
    )


@subscribe("order.credit_hold", in_transaction=True, key="exceptions.credit_hold")
def credit_hold(event) -> None:
    payload = event.payload or {}
    _order_case(
        event,
        type_code="credit_hold",
        summary=f"{payload.get('order')} on credit hold: {payload.get('hold_reason') or event.reason}",
        context={"exposure": payload.get("exposure"), "credit_limit": payload.get("credit_limit")},
    )


@subscribe("order.address_invalid", in_transaction=True, key="exceptions.address_invalid")
def address_invalid(event) -> None:
    payload = event.payload or {}
    missing = payload.get("missing") or []
    _order_case(
        event,
        type_code="address_invalid",
        summary=f"{payload.get('order')} held: ship-to address missing {', '.join(missing) or 'details'}",
        context={"missing": missing},
    )


@subscribe("order.allocated", in_transaction=True, key="exceptions.partial_shipment")
def partial_allocation(event) -> None:
    """Not everything is reserved and the customer takes no split shipments: customer service decides."""
    payload = event.payload or {}
    outcome = payload.get("outcome")
    if outcome not in ("partially_allocated", "backordered"):
        return
    from orchestration.models import Customer

    allows_split = (
        Customer.objects.filter(pk=payload.get("customer_id")).values_list("allows_split_shipment", flat=True).first()
    )
    if allows_split is None or allows_split:
        return
    short = [line for line in payload.get("lines") or [] if line.get("shortfall")]
    described = ", ".join(f"line {line['line_no']} {line['sku']} short {line['shortfall']}" for line in short[:5])
    _order_case(
        event,
        type_code="partial_shipment_decision",
        summary=(
            f"{payload.get('order')} is {outcome.replace('_', ' ')} and {payload.get('customer')} takes no split "
            f"shipments: {described or 'stock missing'}"
        ),
        context={"outcome": outcome, "short_lines": short},
    )


def _clear_for_order(event, type_codes: list[str], why: str) -> None:
    payload = event.payload or {}
    order = payload.get("order", "")
    _safely(
        "auto-resolve",
        event,
        lambda: services.cases_auto_resolve_for_order(
            order_number=order,
            type_codes=type_codes,
            actor=event_actor(event),
            reason=f"Cause cleared: {order} {why}" + (f" ({event.reason})" if event.reason else ""),
            now=event.occurred_at,
        ),
    )


@subscribe("order.cutoff_at_risk", in_transaction=True, key="exceptions.carrier_cutoff")
def carrier_cutoff_at_risk(event) -> None:
    """An order due today is not packed near (or at) its carrier cutoff: transportation decides."""
    payload = event.payload or {}
    minutes = payload.get("minutes_left", 0)
    when = f"in {minutes} min" if minutes >= 0 else f"{-minutes} min ago"
    verb = "will miss" if minutes >= 0 else "missed"
    _order_case(
        event,
        type_code="carrier_cutoff_miss",
        summary=(
            f"{payload.get('order')} {verb} today's {payload.get('carrier') or 'carrier'} pickup at "
            f"{payload.get('warehouse')}: cutoff {when}, still {str(payload.get('status', '')).replace('_', ' ')}"
        ),
        context={
            "carrier": payload.get("carrier"),
            "service_level": payload.get("service_level"),
            "cutoff": payload.get("cutoff"),
            "minutes_left": minutes,
        },
    )


@subscribe("order.packed", in_transaction=True, key="exceptions.packed_before_cutoff")
def packed_before_cutoff(event) -> None:
    """Packed in time after all: a carrier-cutoff case whose cutoff is still ahead has no cause left."""
    from exceptions.models import Case

    order = (event.payload or {}).get("order", "")
    if not order:
        return
    cutoffs = Case.objects.active().filter(type__code="carrier_cutoff_miss", order_number=order)
    ahead = [
        cutoff
        for cutoff in cutoffs.values_list("context__cutoff", flat=True)
        if isinstance(cutoff, str) and _before(event.occurred_at, cutoff)
    ]
    if ahead:
        _clear_for_order(event, ["carrier_cutoff_miss"], "was packed before the cutoff")


def _before(moment: dt.datetime, iso: str) -> bool:
    try:
        return moment < dt.datetime.fromisoformat(iso)
    except (TypeError, ValueError):  # a context edited by hand: leave the case to a person
        return False


@subscribe("order.shipped", in_transaction=True, key="exceptions.order_shipped")
def order_shipped(event) -> None:
    _clear_for_order(event, ["carrier_cutoff_miss"], "has shipped")


@subscribe("order.backorder_filled", in_transaction=True, key="exceptions.backorder_filled")
def backorder_filled(event) -> None:
    _clear_for_order(event, STOCK_WAIT_TYPES, "is fully allocated now")


@subscribe("order.credit_released", in_transaction=True, key="exceptions.credit_released")
def credit_released(event) -> None:
    _clear_for_order(event, ["credit_hold"], "was released from credit hold")


@subscribe("order.cancelled", in_transaction=True, key="exceptions.order_cancelled")
def order_cancelled(event) -> None:
    _clear_for_order(event, ORDER_BOUND_TYPES, "was cancelled")


@subscribe("order.unheld", in_transaction=True, key="exceptions.order_unheld")
def order_unheld(event) -> None:
    """The order continues (its address was corrected outside the case): the address case has no cause left."""
    _clear_for_order(event, ["address_invalid"], "was released from hold")
