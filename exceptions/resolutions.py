"""Resolution actions: what resolving a case *does* in the domain, through the core's services.

A handler runs inside ``case_resolve``'s transaction, after the case and its cause are
locked and the person's roles checked. It calls the owning app's service (never its models'
writes), returns what happened in plain words, and raises ``DomainError`` to refuse — then
nothing changes, neither the domain nor the case.

Approvals (``approval=True``) are subject to segregation of duties: whoever raised or
recorded what is being approved (the counter of a count, the person who entered an order, the
actor who raised the case) may not approve it.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from portal.actors import Actor
from portal.domain import DomainError, InvalidInput, TransitionRefused


@dataclass(frozen=True)
class Resolution:
    code: str
    label: str
    handler: Callable[..., str]
    approval: bool = False
    requesters: Callable | None = field(default=None, compare=False)


RESOLUTIONS: dict[str, Resolution] = {}


def register(
    code: str, *, label: str, handler: Callable[..., str], approval: bool = False, requesters: Callable | None = None
) -> Resolution:
    """Add (or replace) the resolution `code`; `handler(*, case, actor, reason, params) -> str`."""
    resolution = Resolution(code=code, label=label, handler=handler, approval=approval, requesters=requesters)
    RESOLUTIONS[code] = resolution
    return resolution


def resolution_codes() -> set[str]:
    return set(RESOLUTIONS)


def label_for(exception_type, code: str) -> str:
    """The label the type gives a resolution, else the registry's."""
    for entry in exception_type.resolutions or []:
        if entry.get("code") == code and entry.get("label"):
            return entry["label"]
    resolution = RESOLUTIONS.get(code)
    return resolution.label if resolution else code


def requesters_of(case, code: str) -> set[str]:
    """Actor labels that may not take this resolution on this case (segregation of duties)."""
    resolution = RESOLUTIONS.get(code)
    if resolution is None or not resolution.approval:
        return set()
    labels = {case.raised_by}
    if resolution.requesters is not None:
        labels |= {label for label in resolution.requesters(case) if label}
    return labels


# --- what a case is about ------------------------------------------------------------


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _subject_pk(case, subject_type: str) -> int | None:
    return _int(case.subject_id) if case.subject_type == subject_type else None


def _order(case):
    from orchestration.models import Order

    query = Order.objects.select_related("customer", "warehouse")
    order = None
    if case.order_number:
        order = query.filter(number=case.order_number).first()
    if order is None and (pk := _subject_pk(case, "orchestration.order") or _int(case.context.get("order_id"))):
        order = query.filter(pk=pk).first()
    if order is None:
        raise TransitionRefused(f"Case {case.pk} names no order to act on.", code="no_subject")
    return order


def _order_line(case, params: dict):
    from orchestration.models import OrderLine, Task

    lines = OrderLine.objects.select_related("item", "order", "order__customer", "order__warehouse")
    line_id = _subject_pk(case, "orchestration.orderline") or _int(case.context.get("order_line_id"))
    if line_id is None and (task_id := _subject_pk(case, "orchestration.task")):
        line_id = Task.objects.filter(pk=task_id).values_list("order_line_id", flat=True).first()
    if line_id is None and "line_no" in params:
        line_no = _int(params.get("line_no"))
        if line_no is None:
            raise InvalidInput("Line number must be a number.", fields={"params.line_no": ["A number."]})
        line_id = OrderLine.objects.filter(order=_order(case), line_no=line_no).values_list("pk", flat=True).first()
        if line_id is None:
            raise InvalidInput(f"The order has no line {line_no}.", fields={"params.line_no": ["No such line."]})
    line = lines.filter(pk=line_id).first() if line_id else None
    if line is None:
        raise TransitionRefused(f"Case {case.pk} names no order line to act on.", code="no_subject")
    return line


def _receipt(case):
    from inventory.models import Receipt

    pk = _subject_pk(case, "inventory.receipt") or _int(case.context.get("receipt_id"))
    receipt = Receipt.objects.filter(pk=pk).first() if pk else None
    if receipt is None:
        raise TransitionRefused(f"Case {case.pk} names no receipt to act on.", code="no_subject")
    return receipt


def _count(case):
    from inventory.models import CycleCount

    pk = _subject_pk(case, "inventory.cyclecount") or _int(case.context.get("count_id"))
    count = CycleCount.objects.select_related("stock_level__item", "stock_level__location").filter(pk=pk).first()
    if count is None:
        raise TransitionRefused(f"Case {case.pk} names no cycle count to act on.", code="no_subject")
    return count


def _text_param(params: dict, name: str, *, required: bool = False, max_length: int = 80) -> str:
    value = params.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"{name.replace('_', ' ').capitalize()} must be text.", fields={f"params.{name}": ["Text."]})
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"Give the {name.replace('_', ' ')}.", fields={f"params.{name}": ["Required."]})
    if len(value) > max_length:
        raise InvalidInput(
            f"{name.replace('_', ' ').capitalize()} is too long.",
            fields={f"params.{name}": [f"At most {max_length} characters."]},
        )
    return value


# --- order lines (short pick, damaged stock, substitution approval) -----------------


def reallocate(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Reserve the missing units again: another location, or (params.warehouse) another warehouse."""
    from inventory.models import Warehouse
    from orchestration import services as orchestration

    line = _order_line(case, params)
    warehouse = None
    code = _text_param(params, "warehouse", max_length=16)
    if code:
        warehouse = Warehouse.objects.filter(code=code, is_active=True).first()
        if warehouse is None:
            raise InvalidInput(
                f"There is no active warehouse {code!r}.", fields={"params.warehouse": ["Unknown warehouse."]}
            )
    before = line.allocated_quantity
    order = orchestration.order_line_reallocate(line=line, actor=actor, reason=reason, warehouse=warehouse)
    line.refresh_from_db()
    if line.allocated_quantity <= before and line.status != line.Status.ALLOCATED:
        raise TransitionRefused(
            f"No other stock of {line.item.sku} is available at {order.warehouse.code}; nothing was changed.",
            code="insufficient_stock",
        )
    return (
        f"Line {line.line_no} of {order.number}: {line.allocated_quantity} of {line.quantity} × {line.item.sku} "
        f"reserved at {order.warehouse.code} (order {order.get_status_display().lower()})"
    )


def backorder(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Keep the missing units open as a backorder, filled when stock arrives."""
    from orchestration import services as orchestration

    line = _order_line(case, params)
    orchestration.order_line_backorder(line=line, actor=actor, reason=reason)
    return f"Line {line.line_no} of {line.order.number}: the missing {line.item.sku} stay on backorder"


def cancel_line(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Cancel the unshipped rest of the line (its reservations and open tasks go too)."""
    from orchestration import services as orchestration

    line = _order_line(case, params)
    line = orchestration.order_line_cancel(line=line, actor=actor, reason=reason)
    return f"Line {line.line_no} of {line.order.number} ({line.item.sku}) cancelled"


def substitute(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Ship a listed substitute for the missing units, if the customer accepts substitutes."""
    from inventory.models import Item, ItemSubstitute
    from orchestration import services as orchestration

    line = _order_line(case, params)
    customer = line.order.customer
    if not customer.allows_substitution:
        raise TransitionRefused(
            f"Customer {customer.code} does not accept substitutes; backorder or cancel the line instead.",
            code="substitution_not_allowed",
        )
    sku = _text_param(params, "substitute" if "substitute" in params else "sku", max_length=40)
    if sku:
        item = Item.objects.filter(sku=sku, is_active=True).first()
        if item is None:
            raise InvalidInput(f"There is no active item {sku!r}.", fields={"params.substitute": ["Unknown SKU."]})
    else:
        link = ItemSubstitute.objects.filter(item=line.item, substitute__is_active=True).order_by("rank").first()
        if link is None:
            raise TransitionRefused(f"{line.item.sku} has no listed substitute.", code="no_substitute")
        item = link.substitute
    new_line = orchestration.order_line_substitute(line=line, substitute=item, actor=actor, reason=reason)
    return (
        f"Line {new_line.line_no} of {line.order.number}: {new_line.quantity} × {item.sku} ship instead of "
        f"{line.item.sku}"
    )


# --- whole orders ----------------------------------------------------------------------


def _release_if_policy_allows(order, *, actor: Actor, reason: str) -> str:
    from orchestration import services as orchestration

    order.refresh_from_db()
    if order.status not in (order.Status.ALLOCATED, order.Status.PARTIALLY_ALLOCATED):
        return order.get_status_display().lower()
    if orchestration.release_policy_for(order.warehouse).auto_release and not orchestration.release_blockers(order):
        orchestration.order_release(order=order, actor=actor, reason=f"Released after the decision: {reason}")
        order.refresh_from_db()
    return order.get_status_display().lower()


def ship_partial(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Ship what is there: after picking, pack what was picked; before release, ship what is reserved.

    Before release a partly reserved line is shortened to its reserved quantity and a line with
    nothing reserved is cancelled; the order then releases as policy allows.
    """
    from orchestration import services as orchestration
    from orchestration.models import Order, OrderLine

    order = _order(case)
    if order.status in (Order.Status.RELEASED, Order.Status.PICKING):
        order = orchestration.order_ship_partial(order=order, actor=actor, reason=reason)
        order.refresh_from_db()
        return f"{order.number}: what was picked ships; the missing rest is cancelled (order {order.get_status_display().lower()})"
    if order.status not in Order.ALLOCATION_STATES:
        raise TransitionRefused(
            f"Order {order.number} is {order.get_status_display().lower()}; there is no partial shipment to decide."
        )
    open_lines = [
        line
        for line in order.lines.select_related("item").exclude(
            status__in=[OrderLine.Status.CANCELLED, OrderLine.Status.SHIPPED, OrderLine.Status.PICKED]
        )
        if line.open_quantity > 0
    ]
    if open_lines and all(
        line.allocated_quantity == 0 for line in order.lines.exclude(status=OrderLine.Status.CANCELLED)
    ):
        raise TransitionRefused(f"Nothing of {order.number} is reserved yet; wait or cancel the order.")
    why = f"Ship what is available: {reason}"
    changes = []
    for line in open_lines:
        if line.allocated_quantity:
            orchestration.order_line_reduce_to_allocated(line=line, actor=actor, reason=why)
            changes.append(f"line {line.line_no} ships {line.allocated_quantity} of {line.quantity}")
        else:
            orchestration.order_line_cancel(line=line, actor=actor, reason=why)
            changes.append(f"line {line.line_no} cancelled")
    status = _release_if_policy_allows(order, actor=actor, reason=reason)
    return f"{order.number}: {', '.join(changes) or 'nothing missing'}; the rest ships (order {status})"


def wait(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Decide to wait: nothing changes now; stock arriving or the next pickup moves the order on."""
    if case.type.code == "carrier_cutoff_miss":
        return f"{case.order_number or case.subject_label} ships with the next pickup"
    return f"{case.order_number or case.subject_label} waits for the missing stock; it fills when stock arrives"


def cancel_order(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Cancel the order: its reservations are released and its open tasks cancelled."""
    from orchestration import services as orchestration

    order = orchestration.order_cancel(order=_order(case), actor=actor, reason=reason)
    return f"{order.number} cancelled"


def release_hold(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Finance lets a credit-held order continue; it is allocated straight away."""
    from orchestration import services as orchestration

    order = orchestration.order_release_credit_hold(order=_order(case), actor=actor, reason=reason)
    order.refresh_from_db()
    return f"{order.number} released from credit hold (now {order.get_status_display().lower()})"


def _order_requesters(case) -> set[str]:
    """Whoever entered the order may not release its credit hold."""
    from orchestration.models import Order

    try:
        order = _order(case)
    except DomainError:
        return set()
    first = Order.history.filter(id=order.pk).order_by("history_date", "history_id").first()
    return {first.history_actor} if first is not None else set()


ADDRESS_FIELDS = {"name": 160, "city": 80, "postal_code": 20, "country": 2}


def _ship_to_param(order, params: dict) -> dict:
    if "ship_to" in params:
        ship_to = params["ship_to"]
    else:  # flat fields, with or without the "ship_to_" prefix a form gives them
        names = [*ADDRESS_FIELDS, "lines"]
        ship_to = {name: params[key] for name in names for key in (name, f"ship_to_{name}") if key in params}
    if not isinstance(ship_to, dict):
        raise InvalidInput("The address must be an object.", fields={"params.ship_to": ["Must be an object."]})
    errors: dict[str, list[str]] = {}
    clean: dict = {}
    current = {
        "name": order.ship_to_name,
        "lines": order.ship_to_lines.splitlines(),
        "city": order.ship_to_city,
        "postal_code": order.ship_to_postal_code,
        "country": order.ship_to_country,
    }
    for name, max_length in ADDRESS_FIELDS.items():
        if name not in ship_to:
            continue
        value = ship_to[name]
        if not isinstance(value, str) or len(value.strip()) > max_length:
            errors[f"params.ship_to.{name}"] = [f"Text of at most {max_length} characters."]
            continue
        clean[name] = value.strip()
    if "lines" in ship_to:
        lines = ship_to["lines"]
        if isinstance(lines, str):
            lines = lines.splitlines()
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            errors["params.ship_to.lines"] = ["A list of street lines."]
        else:
            clean["lines"] = [line.strip() for line in lines if line.strip()]
    if "country" in clean and not re.fullmatch(r"[A-Za-z]{2}", clean["country"]):
        errors["params.ship_to.country"] = ["A two-letter country code."]
    if not clean and not errors:
        errors["params.ship_to"] = ["Give the corrected address."]
    merged = {**current, **clean}
    for name in ["name", "lines", "city", "postal_code", "country"]:
        if not merged.get(name) and f"params.ship_to.{name}" not in errors:
            errors[f"params.ship_to.{name}"] = ["Required for a complete address."]
    if errors:
        raise InvalidInput("The corrected address is not complete; nothing was changed.", fields=errors)
    return clean


def fix_address(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Correct the ship-to address; an order held for it continues (and is allocated)."""
    from orchestration import services as orchestration
    from orchestration.models import Order

    order = _order(case)
    ship_to = _ship_to_param(order, params)
    order = orchestration.order_update_ship_to(order=order, ship_to=ship_to, actor=actor, reason=reason)
    if order.status == Order.Status.ON_HOLD:
        order = orchestration.order_unhold(order=order, actor=actor, reason=f"Address corrected: {reason}")
    order.refresh_from_db()
    return f"{order.number}: ship-to address corrected (order {order.get_status_display().lower()})"


def reassign_carrier(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Book another carrier or service for the order; the TMS hears of it and the cutoff watch follows it."""
    from orchestration import services as orchestration

    carrier = _text_param(params, "carrier", required=True, max_length=40)
    service_level = _text_param(params, "service_level", max_length=40)
    order = orchestration.order_set_carrier(
        order=_order(case), carrier=carrier, service_level=service_level or None, actor=actor, reason=reason
    )
    return f"{order.number} rebooked with {order.carrier} ({order.service_level})"


# --- receipts and counts ---------------------------------------------------------------


def accept_variance(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Accept what was received as final; the supplier invoice may be paid for it."""
    from inventory import services as inventory

    receipt = inventory.receipt_accept_variance(receipt=_receipt(case), actor=actor, reason=reason)
    return f"Receipt {receipt.number}: received quantities accepted; the supplier invoice is released"


def dispute_variance(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Dispute the delivery with the supplier; the invoice stays on hold."""
    from inventory import services as inventory

    receipt = inventory.receipt_dispute(receipt=_receipt(case), actor=actor, reason=reason)
    return f"Receipt {receipt.number}: disputed with {receipt.supplier}; the supplier invoice stays on hold"


def approve_adjustment(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Apply the counted quantity to on hand (never by the person who counted)."""
    from inventory import services as inventory

    count = _count(case)
    level = count.stock_level
    count = inventory.count_approve(count=count, actor=actor, reason=reason)
    return (
        f"Count {count.pk} approved: {level.item.sku} at {level.location.code} set from "
        f"{count.expected_quantity} to {count.counted_quantity}"
    )


def _count_requesters(case) -> set[str]:
    try:
        return {_count(case).counted_by_actor}
    except DomainError:
        return set()


def reject_count(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Discard the count (on hand unchanged) and ask for a recount."""
    from inventory import services as inventory

    count = _count(case)
    inventory.count_reject(count=count, actor=actor, reason=reason)
    recount = inventory.count_request(stock_level=count.stock_level, actor=actor, reason=f"Recount: {reason}")
    return f"Count {count.pk} rejected; recount {recount.pk} requested"


def _stock_level(case):
    from inventory.models import StockLevel

    pk = _subject_pk(case, "inventory.stocklevel") or _int(case.context.get("stock_level_id"))
    if pk is None and (count_id := _subject_pk(case, "inventory.cyclecount") or _int(case.context.get("count_id"))):
        from inventory.models import CycleCount

        pk = CycleCount.objects.filter(pk=count_id).values_list("stock_level_id", flat=True).first()
    if pk is None and case.context.get("sku") and case.context.get("location") and case.warehouse_id:
        pk = (
            StockLevel.objects.filter(
                item__sku=case.context["sku"],
                location__code=case.context["location"],
                location__warehouse_id=case.warehouse_id,
            )
            .values_list("pk", flat=True)
            .first()
        )
    return StockLevel.objects.select_related("item", "location").filter(pk=pk).first() if pk else None


def investigate(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Ask for a cycle count of the stock the case is about."""
    from inventory import services as inventory

    level = _stock_level(case)
    if level is None:
        raise TransitionRefused(
            "The case names no stock location to count; acknowledge it with your findings instead.", code="no_subject"
        )
    count = inventory.count_request(stock_level=level, actor=actor, reason=f"Investigate: {reason}")
    return f"Count {count.pk} requested for {level.item.sku} at {level.location.code}"


def acknowledge(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Nothing to change in the domain: the person saw it and says what they did."""
    return f"Acknowledged by {actor.name}"


def cause_cleared(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Recorded by ``case_auto_resolve`` when the cause disappeared; kept here so the code is known."""
    return "The cause disappeared"


# --- integration messages --------------------------------------------------------------


def _message_id(case, params: dict) -> int:
    message_id = _int(case.context.get("message_id"))
    if case.subject_type.startswith("integrations.") and message_id is None:
        message_id = _int(case.subject_id)
    if message_id is None:
        message_id = _int(params.get("message_id"))
    if message_id is None:
        raise TransitionRefused(f"Case {case.pk} names no partner message.", code="no_subject")
    return message_id


def _integrations_service(name: str):
    try:
        from integrations import services as integrations
    except ImportError:
        integrations = None
    function = getattr(integrations, name, None)
    if function is None:
        raise DomainError(
            f"{name.replace('_', ' ').capitalize()} is not available yet in this installation.", code="not_available"
        )
    return function


INBOUND_EVENT = "integrations.inboundevent"


def _inbound_event(case):
    from integrations.models import InboundEvent

    try:
        return InboundEvent.objects.get(pk=_int(case.subject_id))
    except InboundEvent.DoesNotExist:
        raise TransitionRefused(f"Case {case.pk} names no stored partner event.", code="no_subject") from None


def replay(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Send the message again (optionally with a corrected payload, which is recorded), or re-run a failed event."""
    if case.subject_type == INBOUND_EVENT:
        from integrations.inbound import inbound_event_replay

        if "payload" in params:
            raise InvalidInput(
                "A partner's event is replayed as it was received; ask the partner to send a corrected event.",
                fields={"params.payload": ["Not allowed for a partner event."]},
            )
        event = inbound_event_replay(event=_inbound_event(case), actor=actor, reason=reason)
        return f"Partner event {event.event_id} queued again"
    message_replay = _integrations_service("message_replay")
    kwargs = {"message_id": _message_id(case, params), "actor": actor, "reason": reason}
    if "payload" in params:
        if isinstance(params["payload"], str):
            try:
                params = {**params, "payload": json.loads(params["payload"])}
            except ValueError:
                raise InvalidInput(
                    "The corrected payload is not valid JSON.", fields={"params.payload": ["Valid JSON."]}
                ) from None
        if not isinstance(params["payload"], dict):
            raise InvalidInput("A corrected payload must be a JSON object.", fields={"params.payload": ["An object."]})
        if "payload" not in inspect.signature(message_replay).parameters:
            raise DomainError("Replaying with a corrected payload is not available yet.", code="not_available")
        kwargs["payload"] = params["payload"]
    message = message_replay(**kwargs)
    corrected = " with a corrected payload" if "payload" in kwargs else ""
    return f"Message #{getattr(message, 'pk', kwargs['message_id'])} replayed{corrected}"


def discard(*, case, actor: Actor, reason: str, params: dict) -> str:
    """Give up on the message (or partner event) on purpose; later ones of its key or subject may go."""
    if case.subject_type == INBOUND_EVENT:
        from integrations.inbound import inbound_event_discard

        event = inbound_event_discard(event=_inbound_event(case), actor=actor, reason=reason)
        return f"Partner event {event.event_id} discarded"
    message_discard = _integrations_service("message_discard")
    message_id = _message_id(case, params)
    message = message_discard(message_id=message_id, actor=actor, reason=reason)
    return f"Message #{getattr(message, 'pk', message_id)} discarded"


register("reallocate", label="Reallocate", handler=reallocate)
register("backorder", label="Backorder the rest", handler=backorder)
register("ship_partial", label="Ship partial", handler=ship_partial)
register("substitute", label="Ship a substitute", handler=substitute)
register("cancel_line", label="Cancel the line", handler=cancel_line)
register(
    "release_hold", label="Release the credit hold", handler=release_hold, approval=True, requesters=_order_requesters
)
register("cancel_order", label="Cancel the order", handler=cancel_order)
register("accept_variance", label="Accept the variance", handler=accept_variance, approval=True)
register("dispute_variance", label="Dispute with the supplier", handler=dispute_variance)
register(
    "approve_adjustment",
    label="Approve the adjustment",
    handler=approve_adjustment,
    approval=True,
    requesters=_count_requesters,
)
register("reject_count", label="Reject the count", handler=reject_count)
register("wait", label="Wait", handler=wait)
register("replay", label="Replay the message", handler=replay)
register("discard", label="Discard the message", handler=discard)
register("acknowledge", label="Acknowledge", handler=acknowledge)
register("cause_cleared", label="Cause cleared (automatic)", handler=cause_cleared)
register("reassign_carrier", label="Book another carrier", handler=reassign_carrier)
register("fix_address", label="Correct the address", handler=fix_address)
register("investigate", label="Investigate (count the location)", handler=investigate)
