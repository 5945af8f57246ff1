"""The rules engine: the triggers a rule may listen to, the fields and actions each offers, validation,
compiled condition evaluation and the action executors.

A rule is data (``automation.models.Rule``). It is evaluated inside the transaction of the change
that published its trigger event (an ``in_transaction`` subscriber), so whatever it does commits
or rolls back with that change. Each action runs in a savepoint: a failing action is logged on the
firing and never breaks the change that triggered it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from portal.actors import Actor
from portal.domain import DomainError
from portal.roles import Role

logger = logging.getLogger(__name__)

# --- field and trigger catalogue ----------------------------------------------------------

STR, INT, NUMBER, BOOL = "str", "int", "number", "bool"
TYPE_LABELS = {STR: "text", INT: "whole number", NUMBER: "number", BOOL: "true/false"}


@dataclass(frozen=True)
class Field:
    """One field a condition may test: its type, what it means and where its value comes from."""

    type: str
    label: str
    choices: tuple[str, ...] = ()
    # Reads the value from the event context; None reads payload[<field name>].
    source: Callable[[EventContext], Any] | None = None
    needs_subject: bool = False  # the value is read from the subject row (one query per event)


@dataclass(frozen=True)
class Trigger:
    """An event name a rule may listen to, the fields its conditions may use and the actions it allows."""

    name: str
    label: str
    subject: str  # "order" | "task" | "case" | "equipment" | "message"
    fields: dict[str, Field]
    actions: frozenset[str]


def _tier_choices() -> tuple[str, ...]:
    return ("standard", "priority", "key_account")


def _payload_number(name: str) -> Callable:
    def read(context: EventContext):
        value = context.payload.get(name)
        if value in (None, ""):
            return None
        try:
            return Decimal(str(value))
        except (InvalidOperation, ValueError):
            return None

    return read


def _order_attr(attribute: str) -> Callable:
    def read(context: EventContext):
        order = context.order
        return None if order is None else attribute_of(order, attribute)

    return read


def attribute_of(order, attribute: str):
    if attribute == "lines_count":
        return getattr(order, "lines_count", None)
    if attribute == "credit_status":
        return order.customer.credit_status
    if attribute == "days_to_ship":
        if not order.requested_ship_date:
            return None
        return (order.requested_ship_date - timezone.localdate()).days
    value = getattr(order, attribute)
    return Decimal(str(value)) if isinstance(value, float) else value


ORDER_FIELDS: dict[str, Field] = {
    "order": Field(STR, "Order number"),
    "customer": Field(STR, "Customer code"),
    "service_tier": Field(STR, "Customer service tier", choices=_tier_choices()),
    "warehouse": Field(STR, "Warehouse code"),
    "source": Field(STR, "Where the order came from (partner code or 'portal')"),
    "status": Field(STR, "Order status after the change"),
    "priority": Field(INT, "Priority (1 low … 4 urgent)"),
    "value": Field(NUMBER, "Order value", source=_payload_number("value")),
    "lines_count": Field(INT, "Number of order lines", source=_order_attr("lines_count"), needs_subject=True),
    "carrier": Field(STR, "Carrier", source=_order_attr("carrier"), needs_subject=True),
    "service_level": Field(STR, "Service level", source=_order_attr("service_level"), needs_subject=True),
    "ship_to_country": Field(
        STR, "Ship-to country (ISO code)", source=_order_attr("ship_to_country"), needs_subject=True
    ),
    "risk_score": Field(NUMBER, "Fulfilment risk score 0–1", source=_order_attr("risk_score"), needs_subject=True),
    "credit_status": Field(
        STR,
        "Customer credit status",
        choices=("good", "watch", "blocked"),
        source=_order_attr("credit_status"),
        needs_subject=True,
    ),
    "days_to_ship": Field(
        INT, "Days until the requested ship date", source=_order_attr("days_to_ship"), needs_subject=True
    ),
}


def _shortfall_lines(context: EventContext):
    return sum(1 for line in context.payload.get("lines", []) if int(line.get("shortfall", 0)) > 0)


def _shortfall_units(context: EventContext):
    return sum(int(line.get("shortfall", 0)) for line in context.payload.get("lines", []))


def _task_count(context: EventContext):
    return len(context.payload.get("tasks", []))


TASK_FIELDS: dict[str, Field] = {
    "kind": Field(STR, "Task kind", choices=("pick", "pack", "putaway", "replenish", "count", "move")),
    "zone": Field(STR, "Zone"),
    "performer": Field(STR, "Who performed it", choices=("person", "machine")),
    "equipment": Field(STR, "Equipment code (machine tasks)"),
    "quantity": Field(INT, "Quantity asked"),
}
SHORT_PICK_FIELDS: dict[str, Field] = {
    **TASK_FIELDS,
    "order": Field(STR, "Order number"),
    "sku": Field(STR, "SKU"),
    "location": Field(STR, "Location code"),
    "requested": Field(INT, "Units asked"),
    "picked": Field(INT, "Units picked"),
    "shortfall": Field(INT, "Units missing"),
    "value": Field(NUMBER, "Value of the missing units", source=_payload_number("value")),
    "customer": Field(STR, "Customer code"),
    "service_tier": Field(STR, "Customer service tier", choices=_tier_choices()),
    "allows_split_shipment": Field(BOOL, "Customer accepts split shipments"),
    "allows_substitution": Field(BOOL, "Customer accepts substitutes"),
}
CASE_FIELDS: dict[str, Field] = {
    "type": Field(STR, "Case type code"),
    "severity": Field(STR, "Severity", choices=("low", "medium", "high", "critical")),
    "queue": Field(STR, "Queue code it was routed to"),
    "warehouse": Field(STR, "Warehouse code"),
    "customer_tier": Field(STR, "Customer service tier", choices=("", *_tier_choices())),
    "materiality": Field(NUMBER, "Materiality (value at stake)", source=_payload_number("materiality")),
    "order": Field(STR, "Order number", source=lambda c: c.payload.get("order") or c.payload.get("order_number")),
    "subject_type": Field(STR, "What the case is about (e.g. orchestration.order)"),
    "occurrences": Field(INT, "How often it was raised"),
}
EQUIPMENT_FIELDS: dict[str, Field] = {
    "equipment": Field(STR, "Equipment code"),
    "equipment_kind": Field(
        STR, "Equipment kind", choices=("amr_fleet", "sorter", "conveyor", "asrs", "pick_to_light")
    ),
    "fault": Field(STR, "What stopped it", choices=("jam", "fault", "offline")),
    "fault_code": Field(STR, "The WCS's fault code"),
    "warehouse": Field(STR, "Warehouse code"),
    "zone": Field(STR, "Zone"),
    "affected_tasks": Field(INT, "Tasks the unit held"),
    "affected_orders": Field(INT, "Orders those tasks belong to"),
}
MESSAGE_FIELDS: dict[str, Field] = {
    "partner": Field(STR, "Partner code"),
    "partner_kind": Field(STR, "Partner kind", choices=("erp", "wms", "tms", "wcs", "storefront")),
    "message_type": Field(STR, "Message type"),
    "attempts": Field(INT, "Delivery attempts made"),
    "order": Field(STR, "Order number", source=lambda c: c.payload.get("order") or c.payload.get("order_number")),
    "last_status_code": Field(INT, "Last HTTP status from the partner"),
}

ACTIONS_EVERYWHERE = frozenset({"raise_case", "notify_role"})
ORDER_ACTIONS = ACTIONS_EVERYWHERE | {"set_priority"}
HOLDABLE_ORDER_ACTIONS = ORDER_ACTIONS | {"hold_order"}
CASE_ACTIONS = ACTIONS_EVERYWHERE | {"route_case", "auto_resolve_case"}

TRIGGERS: dict[str, Trigger] = {
    t.name: t
    for t in [
        Trigger("order.received", "Order received", "order", ORDER_FIELDS, ORDER_ACTIONS),
        Trigger("order.validated", "Order validated", "order", ORDER_FIELDS, HOLDABLE_ORDER_ACTIONS),
        Trigger(
            "order.allocated",
            "Order allocated",
            "order",
            {
                **ORDER_FIELDS,
                "outcome": Field(
                    STR, "Allocation outcome", choices=("allocated", "partially_allocated", "backordered")
                ),
                "shortfall_lines": Field(INT, "Lines not fully allocated", source=_shortfall_lines),
                "shortfall_units": Field(INT, "Units not allocated", source=_shortfall_units),
            },
            HOLDABLE_ORDER_ACTIONS,
        ),
        Trigger(
            "order.credit_hold",
            "Order put on credit hold",
            "order",
            {
                **ORDER_FIELDS,
                "exposure": Field(NUMBER, "Customer exposure", source=_payload_number("exposure")),
                "credit_limit": Field(NUMBER, "Customer credit limit", source=_payload_number("credit_limit")),
            },
            ORDER_ACTIONS,
        ),
        Trigger(
            "order.released",
            "Order released to the warehouse",
            "order",
            {
                **ORDER_FIELDS,
                "task_count": Field(INT, "Pick tasks created", source=_task_count),
            },
            ORDER_ACTIONS,
        ),
        Trigger("task.short_picked", "Short pick", "task", SHORT_PICK_FIELDS, ORDER_ACTIONS),
        Trigger(
            "task.fell_back_to_manual", "Machine task fell back to manual", "task", TASK_FIELDS, ACTIONS_EVERYWHERE
        ),
        Trigger("case.raised", "Exception case raised", "case", CASE_FIELDS, CASE_ACTIONS),
        Trigger("equipment.faulted", "Equipment jam or fault", "equipment", EQUIPMENT_FIELDS, ACTIONS_EVERYWHERE),
        Trigger("equipment.offline", "Equipment stopped reporting", "equipment", EQUIPMENT_FIELDS, ACTIONS_EVERYWHERE),
        Trigger(
            "message.dead_lettered", "Outbound message dead-lettered", "message", MESSAGE_FIELDS, ACTIONS_EVERYWHERE
        ),
    ]
}
TRIGGER_CHOICES = [(t.name, t.label) for t in TRIGGERS.values()]

OPS = {
    "eq": "equals",
    "ne": "does not equal",
    "gt": "greater than",
    "gte": "at least",
    "lt": "less than",
    "lte": "at most",
    "in": "one of",
    "not_in": "none of",
    "between": "between (inclusive)",
    "contains": "contains",
}
ORDERED_OPS = {"gt", "gte", "lt", "lte", "between"}
ACTION_LABELS = {
    "set_priority": "Set the order's priority",
    "hold_order": "Put the order on hold",
    "route_case": "Route the case to a queue",
    "raise_case": "Raise an exception case",
    "auto_resolve_case": "Resolve the case with a named resolution",
    "notify_role": "Notify a role",
}
SEVERITIES = ("low", "medium", "high", "critical")


# --- validation ---------------------------------------------------------------------------


def _value_fits(value: Any, kind: str) -> bool:
    if kind == STR:
        return isinstance(value, str)
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUMBER:
        return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if kind == BOOL:
        return isinstance(value, bool)
    return False


def _check_leaf(leaf: dict, trigger: Trigger, path: str, errors: list[str]) -> None:
    unknown = set(leaf) - {"field", "op", "value"}
    if unknown:
        errors.append(f"{path}: unknown keys {', '.join(sorted(unknown))} (a condition has field, op and value).")
    name, op = leaf.get("field"), leaf.get("op")
    spec = trigger.fields.get(name) if isinstance(name, str) else None
    if spec is None:
        errors.append(
            f"{path}: unknown field {name!r} for trigger {trigger.name}; "
            f"choose from {', '.join(sorted(trigger.fields))}."
        )
        return
    if op not in OPS:
        errors.append(f"{path}: unknown op {op!r}; choose from {', '.join(OPS)}.")
        return
    if "value" not in leaf:
        errors.append(f"{path}: a value is required.")
        return
    value = leaf["value"]
    label = TYPE_LABELS[spec.type]
    if op in ORDERED_OPS and spec.type not in (INT, NUMBER):
        errors.append(f"{path}: {op!r} compares numbers, but {name!r} is {label}.")
    elif op == "contains" and spec.type != STR:
        errors.append(f"{path}: 'contains' works on text, but {name!r} is {label}.")
    elif op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            errors.append(f"{path}: {op!r} needs a non-empty list of {label} values.")
        elif not all(_value_fits(item, spec.type) for item in value):
            errors.append(f"{path}: every value of {name!r} must be {label}.")
        elif spec.choices and set(value) - set(spec.choices):
            errors.append(
                f"{path}: {', '.join(map(str, sorted(set(value) - set(spec.choices))))} is not a "
                f"valid {name}; choose from {', '.join(c or '(none)' for c in spec.choices)}."
            )
    elif op == "between":
        if not isinstance(value, list) or len(value) != 2 or not all(_value_fits(item, spec.type) for item in value):
            errors.append(f"{path}: 'between' needs [low, high], two {label} values.")
        elif value[0] > value[1]:
            errors.append(f"{path}: 'between' needs low ≤ high.")
    elif not _value_fits(value, spec.type):
        errors.append(f"{path}: {name!r} is {label}; {value!r} is not.")
    elif spec.choices and op in ("eq", "ne") and value not in spec.choices:
        errors.append(
            f"{path}: {value!r} is not a valid {name}; choose from {', '.join(c or '(none)' for c in spec.choices)}."
        )


def _check_group(node: Any, trigger: Trigger, path: str, errors: list[str], depth: int = 0) -> None:
    if depth > 5:
        errors.append(f"{path}: conditions nest too deeply (at most 5 levels).")
        return
    if not isinstance(node, dict):
        errors.append(f"{path}: expected an object (a condition or an all/any group).")
        return
    groups = [key for key in ("all", "any") if key in node]
    if groups:
        if len(node) != 1:
            errors.append(f"{path}: a group has exactly one key, 'all' or 'any'.")
            return
        items = node[groups[0]]
        if not isinstance(items, list) or not items:
            errors.append(f"{path}.{groups[0]}: expected a non-empty list of conditions.")
            return
        for index, item in enumerate(items):
            _check_group(item, trigger, f"{path}.{groups[0]}[{index}]", errors, depth + 1)
        return
    _check_leaf(node, trigger, path, errors)


def _exceptions_lookup(kind: str, code: str) -> bool | None:
    """Whether a queue / case type / resolution code exists; None when the exceptions app cannot tell yet."""
    try:
        if kind == "queue":
            from exceptions.models import Queue

            return Queue.objects.filter(code=code).exists()
        if kind == "case_type":
            from exceptions.models import ExceptionType

            return ExceptionType.objects.filter(code=code).exists()
        if kind == "resolution":
            from exceptions import resolutions

            registry = getattr(resolutions, "RESOLUTIONS", None) or getattr(resolutions, "_registry", None)
            if registry is None and hasattr(resolutions, "resolution_codes"):
                registry = resolutions.resolution_codes()
            return None if registry is None else code in registry
    except (ImportError, AttributeError, DatabaseError):
        return None
    return None


def _check_action(action: Any, trigger: Trigger, path: str, errors: list[str]) -> None:
    if not isinstance(action, dict) or not isinstance(action.get("type"), str):
        errors.append(f"{path}: expected an object with a 'type'.")
        return
    kind = action["type"]
    if kind not in ACTION_LABELS:
        errors.append(f"{path}: unknown action {kind!r}; choose from {', '.join(ACTION_LABELS)}.")
        return
    if kind not in trigger.actions:
        errors.append(
            f"{path}: {kind!r} is not allowed for trigger {trigger.name}; "
            f"allowed: {', '.join(sorted(trigger.actions))}."
        )
        return
    allowed_keys = {"type", "reason"} | {
        "set_priority": {"priority"},
        "hold_order": set(),
        "route_case": {"queue"},
        "raise_case": {"case_type", "summary", "severity"},
        "auto_resolve_case": {"resolution"},
        "notify_role": {"role", "message"},
    }[kind]
    unknown = set(action) - allowed_keys
    if unknown:
        errors.append(f"{path}: unknown keys {', '.join(sorted(unknown))} for {kind!r}.")
    if "reason" in action and not isinstance(action["reason"], str):
        errors.append(f"{path}: reason must be text.")
    if kind == "set_priority":
        priority = action.get("priority")
        if not (isinstance(priority, int) and not isinstance(priority, bool) and 1 <= priority <= 4):
            errors.append(f"{path}: priority must be a whole number from 1 (low) to 4 (urgent).")
    elif kind in ("route_case", "raise_case", "auto_resolve_case"):
        key, lookup = {
            "route_case": ("queue", "queue"),
            "raise_case": ("case_type", "case_type"),
            "auto_resolve_case": ("resolution", "resolution"),
        }[kind]
        code = action.get(key)
        if not isinstance(code, str) or not code:
            errors.append(f"{path}: {kind!r} needs {key!r} (a code).")
        elif _exceptions_lookup(lookup, code) is False:
            errors.append(f"{path}: there is no {key.replace('_', ' ')} {code!r}.")
        if kind == "raise_case":
            if "summary" in action and not isinstance(action["summary"], str):
                errors.append(f"{path}: summary must be text.")
            if "severity" in action and action["severity"] not in SEVERITIES:
                errors.append(f"{path}: severity must be one of {', '.join(SEVERITIES)}.")
    elif kind == "notify_role":
        if action.get("role") not in Role.values:
            errors.append(f"{path}: role must be one of {', '.join(Role.values)}.")
        if not isinstance(action.get("message", ""), str):
            errors.append(f"{path}: message must be text.")


def validate_rule(*, trigger: str, conditions: Any, actions: Any) -> None:
    """Raise ValidationError (per field: trigger, conditions, actions) unless the rule can run as written."""
    spec = TRIGGERS.get(trigger)
    if spec is None:
        raise ValidationError({"trigger": f"Unknown trigger {trigger!r}; choose from {', '.join(TRIGGERS)}."})
    errors: dict[str, list[str]] = {}
    condition_errors: list[str] = []
    if conditions not in (None, {}):
        _check_group(conditions, spec, "conditions", condition_errors)
    if condition_errors:
        errors["conditions"] = condition_errors
    action_errors: list[str] = []
    if not isinstance(actions, list) or not actions:
        action_errors.append("A rule needs at least one action (a list of objects with a 'type').")
    else:
        for index, action in enumerate(actions):
            _check_action(action, spec, f"actions[{index}]", action_errors)
    if action_errors:
        errors["actions"] = action_errors
    if errors:
        raise ValidationError(errors)


# --- evaluation ---------------------------------------------------------------------------


class EventContext:
    """The values a rule's conditions read: the event payload, plus the subject row loaded at most once."""

    def __init__(self, event, *, trigger: Trigger, order=None):
        self.event = event
        self.trigger = trigger
        self.payload = event.payload or {}
        self._order = order
        self._order_loaded = order is not None

    @property
    def order_id(self) -> int | None:
        if self.trigger.subject == "order" and self.event.subject_id:
            return int(self.event.subject_id)
        value = self.payload.get("order_id")
        return int(value) if value else None

    @property
    def order(self):
        if not self._order_loaded:
            self._order_loaded = True
            order_id = self.order_id
            self._order = load_orders([order_id]).get(order_id) if order_id else None
        return self._order

    @property
    def order_number(self) -> str:
        number = self.payload.get("order") or self.payload.get("order_number")
        if isinstance(number, str) and number:
            return number
        return self.order.number if self.order_id and self.order is not None else ""

    @property
    def case_id(self) -> int | None:
        if self.trigger.subject == "case" and self.event.subject_id:
            return int(self.event.subject_id)
        value = self.payload.get("case_id")
        return int(value) if value else None

    def value(self, name: str):
        spec = self.trigger.fields[name]
        return spec.source(self) if spec.source else self.payload.get(name)


def load_orders(order_ids) -> dict:
    from django.db.models import Count

    from orchestration.models import Order

    ids = [pk for pk in order_ids if pk]
    if not ids:
        return {}
    rows = Order.objects.filter(pk__in=ids).select_related("customer").annotate(lines_count=Count("lines"))
    return {order.pk: order for order in rows}


def _as_comparable(value, kind: str):
    if value is None:
        return None
    if kind == NUMBER:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    return value


def _compile_leaf(leaf: dict, trigger: Trigger) -> Callable[[EventContext], bool]:
    name, op, expected = leaf["field"], leaf["op"], leaf["value"]
    kind = trigger.fields[name].type
    if op in ("in", "not_in"):
        expected = frozenset(_as_comparable(item, kind) for item in expected)
    elif op == "between":
        expected = (_as_comparable(expected[0], kind), _as_comparable(expected[1], kind))
    elif op != "contains":
        expected = _as_comparable(expected, kind)

    def test(context: EventContext) -> bool:
        actual = _as_comparable(context.value(name), kind)
        if op == "eq":
            return actual == expected
        if op == "ne":
            return actual != expected
        if op == "in":
            return actual in expected
        if op == "not_in":
            return actual not in expected
        if actual is None:
            return False  # a missing value is neither above, below nor inside anything
        if op == "gt":
            return actual > expected
        if op == "gte":
            return actual >= expected
        if op == "lt":
            return actual < expected
        if op == "lte":
            return actual <= expected
        if op == "between":
            return expected[0] <= actual <= expected[1]
        if op == "contains":
            return str(expected).lower() in str(actual).lower()
        raise ValueError(f"unknown op {op!r}")

    return test


def compile_conditions(conditions: Any, trigger: Trigger) -> Callable[[EventContext], bool]:
    """Turn validated conditions into one predicate (evaluated left to right, short-circuiting)."""
    if not conditions:
        return lambda context: True
    if "all" in conditions:
        parts = [compile_conditions(item, trigger) for item in conditions["all"]]
        return lambda context: all(part(context) for part in parts)
    if "any" in conditions:
        parts = [compile_conditions(item, trigger) for item in conditions["any"]]
        return lambda context: any(part(context) for part in parts)
    return _compile_leaf(conditions, trigger)


_compiled: dict[tuple[int, int], Callable[[EventContext], bool]] = {}


def predicate_for(rule) -> Callable[[EventContext], bool]:
    """The compiled conditions of this exact rule version (cached per process; versions never change)."""
    key = (rule.pk, rule.version)
    predicate = _compiled.get(key)
    if predicate is None:
        if len(_compiled) > 5000:
            _compiled.clear()
        predicate = compile_conditions(rule.conditions, TRIGGERS[rule.trigger])
        _compiled[key] = predicate
    return predicate


def describe_action(action: dict) -> str:
    """Plain words for one action, as shown on firings, recommendations and the dry run."""
    kind = action.get("type")
    if kind == "set_priority":
        return f"set the order's priority to {action.get('priority')}"
    if kind == "hold_order":
        return "put the order on hold"
    if kind == "route_case":
        return f"route the case to queue {action.get('queue')}"
    if kind == "raise_case":
        return f"raise a {action.get('case_type')} case"
    if kind == "auto_resolve_case":
        return f"resolve the case with {action.get('resolution')}"
    if kind == "notify_role":
        return f"notify {action.get('role')}: {action.get('message', '')}".rstrip(": ")
    return str(kind)


# --- the subscriber: evaluate in the triggering transaction --------------------------------

MAX_DEPTH = 3  # rules whose actions publish events may trigger rules, this many levels deep
_state = threading.local()


@dataclass
class Evaluation:
    """What one event did to the rules engine (for tests and the benchmark)."""

    rules_evaluated: int = 0
    firings: list = field(default_factory=list)


# Triggers with no enabled rule, remembered briefly: most events have none, and asking the
# database again for every event is most of what the engine costs the change publishing it.
# Any save or delete of a rule in this process forgets them at once; another process sees a
# newly enabled rule at most RULELESS_TTL_S later.
RULELESS_TTL_S = 2.0
_ruleless: dict[str, float] = {}  # trigger -> time.monotonic() deadline


def _known_ruleless(trigger: str) -> bool:
    deadline = _ruleless.get(trigger)
    if deadline is None:
        return False
    if deadline < time.monotonic():
        _ruleless.pop(trigger, None)
        return False
    return True


def forget_ruleless(**_kwargs) -> None:
    """Signal receiver: a rule was saved or deleted, so every trigger may have rules now."""
    _ruleless.clear()


post_save.connect(forget_ruleless, sender="automation.Rule", dispatch_uid="automation.rules.forget_ruleless.save")
post_delete.connect(forget_ruleless, sender="automation.Rule", dispatch_uid="automation.rules.forget_ruleless.delete")


def evaluate_event(event) -> Evaluation:
    """Evaluate every enabled rule for this event's trigger, in order, and fire the ones that match."""
    from automation.models import Rule

    result = Evaluation()
    trigger = TRIGGERS.get(event.name)
    depth = getattr(_state, "depth", 0)
    if trigger is None or depth >= MAX_DEPTH:
        return result
    if _known_ruleless(event.name):
        return result
    rules = list(Rule.objects.enabled_for(event.name))
    if not rules:
        _ruleless[event.name] = time.monotonic() + RULELESS_TTL_S
        return result
    context = EventContext(event, trigger=trigger)
    _state.depth = depth + 1
    try:
        for rule in rules:
            if event.actor == Actor.rule(rule.name).label:
                continue  # a rule never fires on the effects of its own action
            result.rules_evaluated += 1
            try:
                matched = predicate_for(rule)(context)
            except (KeyError, TypeError, ValueError, InvalidOperation) as error:
                result.firings.append(_log_evaluation_error(rule, context, error))
                continue
            if matched:
                result.firings.append(fire(rule, context))
    finally:
        _state.depth = depth
    return result


def _firing_kwargs(rule, context: EventContext) -> dict:
    event = context.event
    return {
        "rule": rule,
        "rule_version": rule.version,
        "rule_name": rule.name,
        "trigger": event.name,
        "event": event if event.pk else None,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "order_number": context.order_number,
        "case_id": context.case_id,
    }


def _log_evaluation_error(rule, context: EventContext, error: Exception):
    from automation.models import RuleFiring

    logger.warning("rule condition failed", extra={"rule": rule.pk, "event_id": context.event.pk})
    return RuleFiring.objects.create(
        **_firing_kwargs(rule, context),
        matched=False,
        mode=RuleFiring.Mode.ADVISORY if rule.mode == rule.Mode.ADVISORY else RuleFiring.Mode.EXECUTED,
        outcome=RuleFiring.Outcome.FAILED,
        error=f"Condition could not be evaluated: {error}",
    )


def fire(rule, context: EventContext):
    """Record a firing; automatic rules execute each action in a savepoint, advisory ones recommend it."""
    from automation.models import Recommendation, RuleFiring

    actor = Actor.rule(rule.name)
    if rule.mode == rule.Mode.ADVISORY:
        firing = RuleFiring.objects.create(
            **_firing_kwargs(rule, context),
            mode=RuleFiring.Mode.ADVISORY,
            outcome=RuleFiring.Outcome.RECOMMENDED,
            actions=[{**action, "status": "recommended", "detail": describe_action(action)} for action in rule.actions],
        )
        Recommendation.objects.bulk_create(
            [
                Recommendation(
                    source=Recommendation.Source.RULE,
                    subject_type=context.event.subject_type,
                    subject_id=context.event.subject_id,
                    order_number=firing.order_number,
                    case_id=firing.case_id,
                    action=action["type"],
                    params=action,
                    firing=firing,
                    summary=f"Rule “{rule.name}” (v{rule.version}) recommends: {describe_action(action)}.",
                    reasons=[f"Matched on {context.event.name} #{context.event.pk}"],
                )
                for action in rule.actions
            ]
        )
        return firing
    outcomes, errors = [], []
    for action in rule.actions:
        reason = action.get("reason") or f"Rule {rule.name} v{rule.version}: {describe_action(action)}"
        try:
            with transaction.atomic():
                detail = execute_action(action, context, actor=actor, reason=reason)
            outcomes.append({**action, "status": "done", "detail": detail})
        except (DomainError, ValidationError, DatabaseError, LookupError, ValueError) as error:
            message = getattr(error, "message", None) or str(error)
            outcomes.append({**action, "status": "failed", "detail": message})
            errors.append(f"{action['type']}: {message}")
    if not errors:
        outcome = RuleFiring.Outcome.EXECUTED
    elif len(errors) == len(outcomes):
        outcome = RuleFiring.Outcome.FAILED
    else:
        outcome = RuleFiring.Outcome.PARTLY_EXECUTED
    return RuleFiring.objects.create(
        **_firing_kwargs(rule, context),
        mode=RuleFiring.Mode.EXECUTED,
        outcome=outcome,
        actions=outcomes,
        error="; ".join(errors),
    )


# --- action executors ---------------------------------------------------------------------


def _order_for(context: EventContext):
    from orchestration.models import Order

    order_id = context.order_id
    if not order_id:
        raise LookupError("the event names no order")
    return Order.objects.get(pk=order_id)


def _case_for(context: EventContext):
    from exceptions.models import Case

    case_id = context.case_id
    if not case_id:
        raise LookupError("the event names no case")
    return Case.objects.get(pk=case_id)


def execute_action(action: dict, context: EventContext, *, actor: Actor, reason: str) -> str:
    """Run one action through the owning app's service; returns what was done, in plain words."""
    kind = action["type"]
    if kind == "set_priority":
        from orchestration import services as orchestration

        order = orchestration.order_set_priority(
            order=_order_for(context), priority=action["priority"], actor=actor, reason=reason
        )
        return f"{order.number} priority is now {order.priority}"
    if kind == "hold_order":
        from orchestration import services as orchestration

        order = orchestration.order_hold(order=_order_for(context), actor=actor, reason=reason)
        return f"{order.number} is on hold"
    if kind == "notify_role":
        from portal.live import broadcast, role_group

        role, event = action["role"], context.event
        data = {
            "type": "notification",
            "seq": event.pk,
            "trigger": event.name,
            "message": action.get("message", ""),
            "order": context.order_number,
            "source": actor.label,
        }
        transaction.on_commit(lambda: broadcast({role_group(role)}, data))
        return f"{role} notified"
    if kind == "raise_case":
        return _raise_case(action, context, actor=actor, reason=reason)
    if kind == "route_case":
        from exceptions import services as exceptions

        case = _case_for(context)
        exceptions.case_route_to(case=case, queue_code=action["queue"], actor=actor, reason=reason)
        return f"case {case.pk} routed to {action['queue']}"
    if kind == "auto_resolve_case":
        from exceptions import services as exceptions

        case = _case_for(context)
        exceptions.case_resolve(case=case, resolution=action["resolution"], actor=actor, reason=reason)
        return f"case {case.pk} resolved with {action['resolution']}"
    raise ValueError(f"unknown action {kind!r}")


def _raise_case(action: dict, context: EventContext, *, actor: Actor, reason: str) -> str:
    from exceptions import services as exceptions

    event = context.event
    label = f"{event.subject_type}:{event.subject_id}" if event.subject_id else event.name
    summary = action.get("summary") or f"{TRIGGERS[event.name].label}: {label} (rule)"
    kwargs = {
        "type_code": action["case_type"],
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "subject_label": context.order_number or label,
        "summary": summary,
        "context": {"trigger": event.name, "event_id": event.pk, "payload": event.payload},
        "actor": actor,
        "reason": reason,
        "order_number": context.order_number,
        "source_event_id": event.pk,
    }
    if action.get("severity"):
        kwargs["severity"] = action["severity"]
    case = exceptions.case_raise(**kwargs)
    return f"case {getattr(case, 'pk', case)} raised ({action['case_type']})"


# --- dry run ------------------------------------------------------------------------------


@dataclass
class DryRunResult:
    """What a rule would have done over past events, without doing it."""

    trigger: str
    days: int
    events_scanned: int = 0
    matched: int = 0
    errors: int = 0
    truncated: bool = False
    samples: list[dict] = field(default_factory=list)


def dry_run(
    *,
    trigger: str,
    conditions: Any,
    actions: list,
    days: int,
    now: dt.datetime | None = None,
    limit: int = 5000,
    sample_size: int = 100,
) -> DryRunResult:
    """Evaluate conditions over the trigger's events of the last `days` days; nothing is executed or stored.

    Subject fields (lines, carrier, risk score …) are read as they are now, not as they were then.
    """
    from portal.models import DomainEvent

    validate_rule(trigger=trigger, conditions=conditions, actions=actions)
    spec = TRIGGERS[trigger]
    predicate = compile_conditions(conditions, spec)
    now = now or timezone.now()
    events = list(
        DomainEvent.objects.filter(name=trigger, occurred_at__gte=now - dt.timedelta(days=days)).order_by("-id")[
            : limit + 1
        ]
    )
    result = DryRunResult(trigger=trigger, days=days, truncated=len(events) > limit)
    events = events[:limit]
    needs_subject = any(f.needs_subject for f in spec.fields.values())
    orders = {}
    if needs_subject:
        contexts = [EventContext(e, trigger=spec) for e in events]
        orders = load_orders({c.order_id for c in contexts})
    described = [describe_action(a) for a in actions]
    for event in events:
        context = EventContext(event, trigger=spec)
        if needs_subject:
            context._order, context._order_loaded = orders.get(context.order_id), True
        result.events_scanned += 1
        try:
            matched = predicate(context)
        except (KeyError, TypeError, ValueError, InvalidOperation):
            result.errors += 1
            continue
        if matched:
            result.matched += 1
            if len(result.samples) < sample_size:
                result.samples.append(
                    {
                        "event_id": event.pk,
                        "occurred_at": event.occurred_at,
                        "subject": f"{event.subject_type}:{event.subject_id}",
                        "order": context.payload.get("order", ""),
                        "would": described,
                    }
                )
    return result
