"""Routing a new case: ordered rules, first match, the default route; versioned rule saves."""

from __future__ import annotations

from decimal import Decimal
from typing import NamedTuple

from django.db import transaction
from django.db.models import Q

from exceptions.models import (
    SEVERITY_RANK,
    ExceptionType,
    Queue,
    RoutingRule,
    SlaPolicy,
)
from portal.actors import Actor, stamp_history

# --- routing -------------------------------------------------------------------------


class Route(NamedTuple):
    """Where a new case goes and why."""

    queue: Queue
    priority: int
    sla_policy: SlaPolicy | None
    rule: RoutingRule | None
    explanation: str


def routing_match(
    *,
    exception_type: ExceptionType,
    severity: str,
    materiality: Decimal,
    warehouse=None,
    customer_tier: str = "",
) -> Route:
    """The first enabled rule (by position) whose conditions all hold; else the type's default queue."""
    rules = (
        RoutingRule.objects.filter(enabled=True)
        .filter(Q(exception_type__isnull=True) | Q(exception_type=exception_type))
        .filter(Q(warehouse__isnull=True) | Q(warehouse_id=getattr(warehouse, "pk", None)))
        .filter(Q(customer_tier="") | Q(customer_tier=customer_tier or ""))
        .filter(Q(min_materiality__isnull=True) | Q(min_materiality__lte=materiality))
        .select_related("target_queue", "sla_policy")
        .order_by("position", "pk")
    )
    rank = SEVERITY_RANK[severity]
    for rule in rules:
        if rule.min_severity and rank < SEVERITY_RANK[rule.min_severity]:
            continue
        return Route(
            queue=rule.target_queue,
            priority=rule.priority or rank,
            sla_policy=rule.sla_policy or exception_type.sla_policy,
            rule=rule,
            explanation=f"rule “{rule.name}” v{rule.version}",
        )
    return Route(
        queue=exception_type.default_queue,
        priority=rank,
        sla_policy=exception_type.sla_policy,
        rule=None,
        explanation="default route (the type's default queue)",
    )


def routing_rule_save(*, rule: RoutingRule, actor: Actor, reason: str = "Changed in the admin") -> RoutingRule:
    """Save a routing rule; a change to what it matches or decides bumps its version (cases pin the old one)."""
    decisive = [
        "enabled",
        "exception_type_id",
        "warehouse_id",
        "customer_tier",
        "min_severity",
        "min_materiality",
        "target_queue_id",
        "priority",
        "sla_policy_id",
        "position",
    ]
    with transaction.atomic():
        if rule.pk:
            before = (
                RoutingRule.objects.select_for_update(no_key=True)
                .filter(pk=rule.pk)
                .values(*decisive, "version")
                .first()
            )
            if before is not None:
                changed = any(before[name] != getattr(rule, name) for name in decisive)
                rule.version = before["version"] + 1 if changed else before["version"]
        stamp_history(rule, actor=actor, reason=reason)
        rule.save()
    return rule


def config_save(*, instance, actor: Actor, reason: str = "Changed in the admin"):
    """Save an exception type, queue or SLA policy with the admin user and reason on its history."""
    with transaction.atomic():
        stamp_history(instance, actor=actor, reason=reason)
        instance.save()
    return instance
