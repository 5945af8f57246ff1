"""The operations admin: resolutions validated as data, rules versioned on save, cases read-only."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from exceptions import services
from exceptions.admin import validate_resolutions
from exceptions.models import Case, ExceptionType, Queue, RoutingRule, SlaPolicy
from tests.exceptions.factories import SYSTEM


@pytest.fixture
def ops(admin_client):
    return admin_client


def type_form(exception_type: ExceptionType, resolutions) -> dict:
    return {
        "code": exception_type.code,
        "name": exception_type.name,
        "description": exception_type.description,
        "default_severity": exception_type.default_severity,
        "default_queue": exception_type.default_queue_id,
        "sla_policy": exception_type.sla_policy_id or "",
        "resolutions": json.dumps(resolutions),
        "enabled": "on",
    }


def test_resolutions_are_validated_against_the_registry_and_the_roles():
    with pytest.raises(ValidationError) as error:
        validate_resolutions([{"code": "teleport", "label": "x", "roles": ["finance"]}])
    assert "unknown resolution 'teleport'" in str(error.value)
    with pytest.raises(ValidationError) as error:
        validate_resolutions([{"code": "backorder", "label": "", "roles": ["wizard"]}])
    assert "label" in str(error.value) and "unknown role(s) wizard" in str(error.value)
    with pytest.raises(ValidationError):
        validate_resolutions({"code": "backorder"})
    ok = validate_resolutions([{"code": "backorder", "label": " Backorder ", "roles": ["customer_service"]}])
    assert ok == [{"code": "backorder", "label": "Backorder", "roles": ["customer_service"]}]


def test_saving_a_type_in_the_admin_validates_and_records_the_admin(ops, admin_user):
    kind = ExceptionType.objects.get(code="damaged_stock")
    url = reverse("admin:exceptions_exceptiontype_change", args=[kind.pk])
    bad = ops.post(url, type_form(kind, [{"code": "nope", "label": "x", "roles": ["finance"]}]))
    assert bad.status_code == 200 and "unknown resolution" in bad.content.decode()
    kind.refresh_from_db()
    assert "nope" not in kind.allowed_resolutions
    good = [{"code": "acknowledge", "label": "Seen", "roles": ["warehouse_supervisor"]}]
    response = ops.post(url, type_form(kind, good))
    assert response.status_code == 302
    kind.refresh_from_db()
    assert kind.resolutions == good
    assert kind.history.latest("history_id").history_actor == f"user:{admin_user.username}"


def test_editing_a_rule_in_the_admin_bumps_its_version(ops):
    rule = RoutingRule.objects.get(name="Credit holds of key accounts")
    url = reverse("admin:exceptions_routingrule_change", args=[rule.pk])
    form = {
        "name": rule.name,
        "position": 20,
        "enabled": "on",
        "exception_type": rule.exception_type_id,
        "warehouse": "",
        "customer_tier": "key_account",
        "min_severity": "",
        "min_materiality": "",
        "target_queue": Queue.objects.get(code="customer_service").pk,
        "priority": 3,
        "sla_policy": rule.sla_policy_id,
    }
    assert ops.post(url, {**form, "customer_tier": "platinum"}).status_code == 200  # not a tier
    response = ops.post(url, form)
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.version, rule.target_queue.code) == (2, "customer_service")


def test_cases_are_read_only_in_the_admin(ops):
    case = services.case_raise(
        type_code="short_pick", subject_type="t.s", subject_id="1", summary="s", actor=SYSTEM, reason="r"
    )
    url = reverse("admin:exceptions_case_change", args=[case.pk])
    page = ops.get(url)
    assert page.status_code == 200
    ops.post(url, {"status": "resolved", "summary": "changed"})
    case.refresh_from_db()
    assert (case.status, case.summary) == ("open", "s")
    assert ops.get(reverse("admin:exceptions_case_changelist") + "?status__exact=open").status_code == 200
    assert ops.get(reverse("admin:exceptions_case_history", args=[case.pk])).status_code == 200
    assert Case.objects.count() == 1


@pytest.mark.parametrize("model", ["exceptiontype", "queue", "slapolicy", "routingrule", "case", "queuechange"])
def test_every_admin_page_renders(ops, model):
    assert ops.get(reverse(f"admin:exceptions_{model}_changelist")).status_code == 200
    if model in ("exceptiontype", "queue", "slapolicy", "routingrule"):
        obj = {
            "exceptiontype": ExceptionType,
            "queue": Queue,
            "slapolicy": SlaPolicy,
            "routingrule": RoutingRule,
        }[model].objects.first()
        assert ops.get(reverse(f"admin:exceptions_{model}_change", args=[obj.pk])).status_code == 200
