"""Routing: rules in order, first match wins, the default route, materiality thresholds, pinned versions."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exceptions import services
from exceptions.models import ExceptionType, Queue, RoutingRule, SlaPolicy
from tests.exceptions.factories import SYSTEM, T0


def raise_case(subject_id="1", type_code="short_pick", **kwargs):
    return services.case_raise(
        type_code=type_code,
        subject_type="test.subject",
        subject_id=subject_id,
        summary="test",
        actor=SYSTEM,
        reason="test",
        now=T0,
        **kwargs,
    )


def queue(code: str) -> Queue:
    return Queue.objects.get(code=code)


def rule(name: str, position: int, target: str, **conditions) -> RoutingRule:
    return RoutingRule.objects.create(name=name, position=position, target_queue=queue(target), **conditions)


def test_no_matching_rule_takes_the_default_route():
    case = raise_case(type_code="credit_hold", materiality=100)
    assert (case.queue.code, case.routed_by, case.routed_by_version) == ("finance", None, None)
    assert case.context["routing"] == "default route (the type's default queue)"
    assert case.sla_policy.name == "Back office"


@pytest.mark.parametrize(
    ("materiality", "tier", "routed"),
    [
        (Decimal("4999.99"), "key_account", False),
        (Decimal("5000"), "key_account", True),
        (Decimal("80000"), "key_account", True),
        (Decimal("80000"), "standard", False),
    ],
)
def test_seeded_key_account_rule_applies_from_its_materiality_threshold(materiality, tier, routed):
    case = raise_case(materiality=materiality, customer_tier=tier)
    seeded = RoutingRule.objects.get(name="Key-account short picks over 5,000")
    if routed:
        assert (case.routed_by, case.routed_by_version, case.priority) == (seeded, 1, 4)
        assert case.sla_policy.name == "Urgent floor"
    else:
        assert case.routed_by is None and case.priority == 3


def test_first_matching_rule_by_position_wins_and_disabled_rules_are_skipped(warehouse):
    late = rule("late", 50, "finance", exception_type=ExceptionType.objects.get(code="short_pick"))
    early = rule("early", 5, "customer_service", warehouse=warehouse)
    off = rule("off", 1, "it_support", enabled=False)
    case = raise_case(warehouse=warehouse)
    assert (case.queue.code, case.routed_by) == ("customer_service", early)
    other = raise_case("2")  # no warehouse: the warehouse rule does not match
    assert (other.queue.code, other.routed_by) == ("finance", late)
    assert off.pk not in {case.routed_by_id, other.routed_by_id}


def test_min_severity_condition():
    rule("critical only", 1, "it_support", min_severity="critical", priority=4)
    assert raise_case("1", severity="high").queue.code == "warehouse_supervisor"
    critical = raise_case("2", severity="critical")
    assert (critical.queue.code, critical.priority) == ("it_support", 4)


def test_rule_sla_policy_overrides_the_types():
    back_office = SlaPolicy.objects.get(name="Back office")
    rule("slow lane", 1, "warehouse_supervisor", sla_policy=back_office)
    case = raise_case()
    assert case.sla_policy == back_office
    assert (case.resolution_due_at - T0).total_seconds() == 2 * 24 * 3600


def test_editing_a_rule_bumps_its_version_and_cases_keep_the_one_that_routed_them(opsadmin):
    from portal.actors import Actor

    routing = rule("key", 1, "customer_service")
    first = raise_case("1")
    routing.target_queue = queue("finance")
    services.routing_rule_save(rule=routing, actor=Actor.for_user(opsadmin), reason="Finance decides these now")
    routing.refresh_from_db()
    assert routing.version == 2
    assert routing.history.latest("history_id").history_actor == "user:olu"
    second = raise_case("2")
    first.refresh_from_db()
    assert (first.queue.code, first.routed_by_version) == ("customer_service", 1)
    assert (second.queue.code, second.routed_by_version) == ("finance", 2)
    routing.name = "renamed"
    services.routing_rule_save(rule=routing, actor=SYSTEM, reason="typo")
    routing.refresh_from_db()
    assert routing.version == 2  # a new name decides nothing new


def test_a_repeat_keeps_its_route():
    case = raise_case()
    rule("everything to finance", 1, "finance")
    again = raise_case()
    assert again.pk == case.pk and again.queue.code == "warehouse_supervisor"
