"""The rules engine: validation, evaluation order, advisory vs automatic, the firing log and the dry run."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from automation import rules
from automation.models import Recommendation, Rule, RuleFiring
from orchestration import services as orchestration
from orchestration.models import Order
from portal.models import DomainEvent
from tests.automation import factories
from tests.automation.factories import ACTOR

pytestmark = pytest.mark.django_db


def errors_of(trigger, conditions, actions) -> dict:
    with pytest.raises(ValidationError) as caught:
        rules.validate_rule(trigger=trigger, conditions=conditions, actions=actions)
    return caught.value.message_dict


URGENT = [{"type": "set_priority", "priority": 4}]


# --- validation ---------------------------------------------------------------------------


def test_unknown_trigger_is_refused():
    assert errors_of("order.teleported", {}, URGENT) == {
        "trigger": [f"Unknown trigger 'order.teleported'; choose from {', '.join(rules.TRIGGERS)}."]
    }


def test_unknown_field_for_the_trigger_is_refused_with_the_fields_it_offers():
    message = errors_of("order.received", {"field": "shortfall", "op": "gt", "value": 1}, URGENT)["conditions"][0]
    assert message.startswith("conditions: unknown field 'shortfall' for trigger order.received; choose from ")
    assert "value" in message and "service_tier" in message


def test_wrong_value_type_is_refused():
    assert errors_of("order.received", {"all": [{"field": "value", "op": "gt", "value": "lots"}]}, URGENT) == {
        "conditions": ["conditions.all[0]: 'value' is number; 'lots' is not."]
    }
    assert errors_of("order.received", {"field": "priority", "op": "eq", "value": 2.5}, URGENT) == {
        "conditions": ["conditions: 'priority' is whole number; 2.5 is not."]
    }


def test_unknown_op_and_op_type_mismatch_are_refused():
    assert errors_of("order.received", {"field": "value", "op": "approx", "value": 1}, URGENT)["conditions"] == [
        "conditions: unknown op 'approx'; choose from eq, ne, gt, gte, lt, lte, in, not_in, between, contains."
    ]
    assert errors_of("order.received", {"field": "customer", "op": "gt", "value": "a"}, URGENT)["conditions"] == [
        "conditions: 'gt' compares numbers, but 'customer' is text."
    ]


def test_membership_ranges_and_choices_are_checked():
    assert errors_of("order.received", {"field": "value", "op": "between", "value": [10, 1]}, URGENT)["conditions"] == [
        "conditions: 'between' needs low ≤ high."
    ]
    assert errors_of("order.received", {"field": "service_tier", "op": "in", "value": ["gold"]}, URGENT)[
        "conditions"
    ] == ["conditions: gold is not a valid service_tier; choose from standard, priority, key_account."]
    assert errors_of("order.received", {"any": []}, URGENT)["conditions"] == [
        "conditions.any: expected a non-empty list of conditions."
    ]


def test_action_not_allowed_for_the_trigger_is_refused():
    assert errors_of("order.received", {}, [{"type": "route_case", "queue": "it_support"}]) == {
        "actions": [
            "actions[0]: 'route_case' is not allowed for trigger order.received; allowed: notify_role, raise_case, "
            "set_priority."
        ]
    }
    assert errors_of("order.received", {}, [{"type": "hold_order"}])["actions"][0].startswith(
        "actions[0]: 'hold_order' is not allowed for trigger order.received"
    )


def test_action_arguments_are_checked():
    assert errors_of("order.allocated", {}, [{"type": "set_priority", "priority": 9}]) == {
        "actions": ["actions[0]: priority must be a whole number from 1 (low) to 4 (urgent)."]
    }
    assert errors_of("order.allocated", {}, [{"type": "notify_role", "role": "janitor"}])["actions"][0].startswith(
        "actions[0]: role must be one of warehouse_supervisor"
    )
    assert errors_of("order.allocated", {}, []) == {
        "actions": ["A rule needs at least one action (a list of objects with a 'type')."]
    }


def test_model_clean_reports_the_same_errors_and_nothing_is_saved():
    rule = Rule(
        name="bad", trigger="order.received", conditions={"field": "nope", "op": "eq", "value": 1}, actions=URGENT
    )
    with pytest.raises(ValidationError) as caught:
        rule.full_clean()
    assert "conditions" in caught.value.message_dict
    assert not Rule.objects.exists()


def test_admin_shows_a_clear_error_and_saves_nothing(client, user_with_role):
    from portal.roles import Role

    admin_user = user_with_role(Role.OPERATIONS_ADMIN, username="olu", is_staff=True, is_superuser=True)
    client.force_login(admin_user)
    response = client.post(
        "/admin/automation/rule/add/",
        {
            "name": "Wrong type",
            "description": "",
            "trigger": "order.allocated",
            "order": 10,
            "mode": "automatic",
            "conditions": '{"field": "value", "op": "gt", "value": "lots"}',
            "actions": '[{"type": "hold_order"}]',
        },
    )
    assert response.status_code == 200
    assert "conditions: &#x27;value&#x27; is number; &#x27;lots&#x27; is not." in response.content.decode()
    assert not Rule.objects.exists()


def test_every_save_increments_the_version():
    rule = factories.rule("r", "order.allocated", URGENT)
    assert rule.version == 1
    rule.order = 5
    rule.save()
    rule.refresh_from_db()
    assert rule.version == 2
    assert rule.history.count() == 2


def test_switching_rules_on_is_a_new_version_with_who_and_why_and_a_repeat_changes_nothing():
    from automation import services

    rule = factories.rule("later", "order.allocated", URGENT, enabled=False)
    changed = services.rules_set_enabled(rule_ids=[rule.pk], enabled=True, actor=ACTOR, reason="Dry run looked right")
    again = services.rules_set_enabled(rule_ids=[rule.pk], enabled=True, actor=ACTOR, reason="Twice")
    rule.refresh_from_db()
    assert (changed, again, rule.enabled, rule.version) == (1, 0, True, 2)
    latest = rule.history.order_by("-history_id").first()
    assert (latest.history_actor, latest.history_reason) == (ACTOR.label, "Dry run looked right")


# --- evaluation ---------------------------------------------------------------------------


@pytest.fixture
def allocated_event(warehouse, customer, manual_item):
    """Process an order (allocation fires order.allocated) and return a function doing so again."""

    def make(**fields):
        order = factories.order_for(customer, warehouse, [(manual_item.sku, 3)], **fields)
        return orchestration.order_process(order=order, actor=ACTOR)

    return make


def test_rules_run_in_order_and_the_last_action_wins(allocated_event):
    second = factories.rule("then urgent", "order.allocated", URGENT, order=20)
    first = factories.rule("first high", "order.allocated", [{"type": "set_priority", "priority": 3}], order=10)
    order = allocated_event()
    order.refresh_from_db()
    assert order.priority == 4
    firings = list(RuleFiring.objects.order_by("id"))
    assert [f.rule_id for f in firings] == [first.pk, second.pk]
    assert [f.outcome for f in firings] == ["executed", "executed"]
    history = list(order.history.order_by("history_id").values_list("history_actor", "priority"))
    assert ("rule:first high", 3) in history and ("rule:then urgent", 4) in history


def test_reordering_the_rules_reverses_the_outcome(allocated_event):
    factories.rule("urgent", "order.allocated", URGENT, order=20)
    factories.rule("high", "order.allocated", [{"type": "set_priority", "priority": 3}], order=30)
    order = allocated_event()
    order.refresh_from_db()
    assert order.priority == 3


def test_conditions_select_the_events_a_rule_fires_on(allocated_event, customer):
    factories.rule(
        "key accounts",
        "order.allocated",
        URGENT,
        conditions={
            "all": [
                {"field": "service_tier", "op": "eq", "value": "key_account"},
                {
                    "any": [
                        {"field": "value", "op": "between", "value": [20, 40]},
                        {"field": "customer", "op": "contains", "value": "zzz"},
                    ]
                },
            ]
        },
    )
    standard = allocated_event()
    customer.service_tier = "key_account"
    customer.save()
    key = allocated_event()
    standard.refresh_from_db()
    key.refresh_from_db()
    assert (standard.priority, key.priority) == (2, 4)
    assert list(RuleFiring.objects.values_list("order_number", flat=True)) == [key.number]


def test_advisory_rule_recommends_and_changes_nothing(allocated_event):
    factories.rule("suggest urgent", "order.allocated", URGENT, mode=Rule.Mode.ADVISORY)
    order = allocated_event()
    order.refresh_from_db()
    assert order.priority == 2
    firing = RuleFiring.objects.get()
    assert (firing.mode, firing.outcome, firing.order_number) == ("advisory", "recommended", order.number)
    recommendation = Recommendation.objects.get()
    assert (recommendation.source, recommendation.status, recommendation.action, recommendation.order_number) == (
        "rule",
        "open",
        "set_priority",
        order.number,
    )
    assert recommendation.summary == "Rule “suggest urgent” (v1) recommends: set the order's priority to 4."


def test_accepting_an_advisory_recommendation_executes_it_in_the_persons_name(allocated_event, user_with_role):
    from automation import services
    from portal.actors import Actor

    factories.rule("suggest urgent", "order.allocated", URGENT, mode=Rule.Mode.ADVISORY)
    order = allocated_event()
    person = user_with_role(username="cs1")
    services.recommendation_accept(
        recommendation=Recommendation.objects.get(), actor=Actor.for_user(person), reason="Agreed, customer called"
    )
    order.refresh_from_db()
    assert order.priority == 4
    assert order.history.latest("history_id").history_actor == "user:cs1"
    recommendation = Recommendation.objects.get()
    assert (recommendation.status, recommendation.decided_by, recommendation.decided_reason) == (
        "accepted",
        "user:cs1",
        "Agreed, customer called",
    )


def test_firing_records_the_rule_version_that_decided(allocated_event):
    rule = factories.rule("urgent", "order.allocated", URGENT)
    allocated_event()
    rule.description = "edited"
    rule.save()
    allocated_event()
    assert list(RuleFiring.objects.order_by("id").values_list("rule_version", flat=True)) == [1, 2]
    first = RuleFiring.objects.order_by("id").first()
    assert first.event.name == "order.allocated" and first.event_id == first.event.pk


def test_firing_is_on_the_order_timeline_page_with_rule_version_and_actor(allocated_event, client, user_with_role):
    from portal.roles import Role

    factories.rule("urgent", "order.allocated", URGENT)
    order = allocated_event()
    client.force_login(user_with_role(Role.CUSTOMER_SERVICE))
    response = client.get(order.get_absolute_url())
    assert response.status_code == 200
    assert "Rule “urgent” v1 fired on order.allocated" in response.content.decode()


def test_disabled_rules_do_not_fire(allocated_event):
    factories.rule("off", "order.allocated", URGENT, enabled=False)
    order = allocated_event()
    order.refresh_from_db()
    assert order.priority == 2
    assert not RuleFiring.objects.exists()


def test_a_failing_action_is_logged_and_does_not_undo_the_triggering_change(allocated_event):
    # An order that is already released cannot be held: the action fails, the release stands.
    factories.rule(
        "hold released",
        "order.released",
        [
            {"type": "notify_role", "role": "customer_service", "message": "released"},
            {"type": "set_priority", "priority": 4},
        ],
    )
    Rule.objects.filter(name="hold released").update(
        actions=[{"type": "notify_role", "role": "customer_service", "message": "released"}, {"type": "hold_order"}]
    )
    order = allocated_event()
    order.refresh_from_db()
    assert order.status == Order.Status.RELEASED
    firing = RuleFiring.objects.get()
    assert firing.outcome == "partly_executed"
    assert [a["status"] for a in firing.actions] == ["done", "failed"]
    assert firing.error.startswith("hold_order: Cannot hold order")


def test_hold_rule_on_allocation_stops_the_release(allocated_event):
    factories.rule(
        "hold big",
        "order.allocated",
        [{"type": "hold_order", "reason": "Big order: check first"}],
        conditions={"field": "value", "op": "gte", "value": 1},
    )
    order = allocated_event()
    order.refresh_from_db()
    assert order.status == Order.Status.ON_HOLD
    assert order.hold_reason == "Big order: check first"
    assert not order.tasks.exists()
    assert RuleFiring.objects.get().outcome == "executed"


@pytest.mark.parametrize("process_in_create", [True, False], ids=["taken-in-one-go", "processed-later"])
def test_a_rule_on_receipt_is_seen_by_the_processing_that_follows(warehouse, customer, manual_item, process_in_create):
    """An order created and processed in one transaction starts from the row the receipt rules left."""
    factories.rule("urgent on receipt", "order.received", URGENT)
    order = factories.order_for(customer, warehouse, [(manual_item.sku, 3)], process=process_in_create)
    if not process_in_create:
        order = orchestration.order_process(order=order, actor=ACTOR)
    assert order.status == Order.Status.RELEASED
    assert order.priority == 4
    assert set(order.tasks.values_list("priority", flat=True)) == {4}


def test_a_rule_does_not_fire_on_its_own_effects(warehouse, customer, manual_item):
    factories.rule("notify", "order.received", [{"type": "notify_role", "role": "customer_service", "message": "x"}])
    event = DomainEvent(name="order.received", payload={"order": "X"}, actor="rule:notify")
    assert rules.evaluate_event(event).rules_evaluated == 0


# --- dry run ------------------------------------------------------------------------------


def test_dry_run_shows_what_would_have_fired_and_executes_nothing(allocated_event):
    old = allocated_event()
    DomainEvent.objects.filter(name="order.allocated", subject_id=str(old.pk)).update(
        occurred_at=timezone.now() - dt.timedelta(days=10)
    )
    recent = allocated_event()
    result = rules.dry_run(
        trigger="order.allocated", conditions={"field": "lines_count", "op": "eq", "value": 1}, actions=URGENT, days=7
    )
    assert (result.events_scanned, result.matched, result.errors) == (1, 1, 0)
    assert result.samples[0]["order"] == recent.number
    assert result.samples[0]["would"] == ["set the order's priority to 4"]
    recent.refresh_from_db()
    assert recent.priority == 2
    assert not RuleFiring.objects.exists()


def test_dry_run_page_is_for_operations_admin_only(client, user_with_role, allocated_event):
    from portal.roles import Role

    rule = factories.rule("draft", "order.allocated", URGENT, enabled=False)
    allocated_event()
    client.force_login(user_with_role(Role.WAREHOUSE_SUPERVISOR, username="sam"))
    assert client.get(f"/automation/rules/{rule.pk}/dry-run/?days=3").status_code == 403
    client.force_login(user_with_role(Role.OPERATIONS_ADMIN, username="olu"))
    response = client.get(f"/automation/rules/{rule.pk}/dry-run/?days=3")
    assert response.status_code == 200
    assert response.context["result"].matched == 1
    assert client.get(f"/automation/rules/{rule.pk}/dry-run/?days=bad").status_code == 200
