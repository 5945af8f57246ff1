"""Risk scoring: training on history, scores bounded by policy thresholds, overrides recorded with reasons."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone

from automation import risk, services
from automation.models import Recommendation, RiskModel, RiskPolicy
from orchestration import services as orchestration
from orchestration.models import Order, Task
from portal.actors import Actor
from portal.domain import InvalidInput
from portal.models import DomainEvent
from tests.automation import factories
from tests.automation.factories import ACTOR

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_model_cache():
    risk.forget_model()
    yield
    risk.forget_model()


def fixed_score_model(bias: float) -> RiskModel:
    """An active model whose score is sigmoid(bias) for every order (all weights zero)."""
    parameters = {**risk.PRIOR, "kind": "logistic", "weights": [0.0] * len(risk.FEATURES), "bias": bias}
    RiskModel.objects.filter(is_active=True).update(is_active=False)
    model = RiskModel.objects.create(version=RiskModel.objects.count() + 1, is_active=True, parameters=parameters)
    risk.forget_model()
    return model


def policy(
    decision=RiskPolicy.Decision.FLAG_HIGH_RISK_ORDER, mode=RiskPolicy.Mode.ADVISORY, threshold=0.6, case_type=""
):
    return RiskPolicy.objects.create(
        name=f"{decision} {mode}",
        decision=decision,
        mode=mode,
        confidence_threshold=threshold,
        case_type_code=case_type,
    )


@pytest.fixture
def allocated_order(warehouse, customer, manual_item):
    order = factories.order_for(customer, warehouse, [(manual_item.sku, 2)])
    return orchestration.order_process(order=order, actor=ACTOR)


# --- scoring and policy bounds -------------------------------------------------------------


def test_score_is_stored_with_reasons_and_used_for_release_sequencing(warehouse, customer, manual_item):
    fixed_score_model(bias=0.0)
    orders = [
        orchestration.order_process(order=factories.order_for(customer, warehouse, [(manual_item.sku, 1)]), actor=ACTOR)
        for _ in range(2)
    ]
    fixed_score_model(bias=2.0)
    assert services.order_score_risk(order=orders[1], now=timezone.now()) == pytest.approx(0.8808, abs=1e-3)
    fixed_score_model(bias=0.0)
    services.order_score_risk(order=orders[0], now=timezone.now())
    scores = dict(Order.objects.values_list("number", "risk_score"))
    assert scores[orders[0].number] == pytest.approx(0.5)
    ranked = list(
        Order.objects.filter(pk__in=[o.pk for o in orders]).in_release_order().values_list("number", flat=True)
    )
    assert ranked == [orders[1].number, orders[0].number]


def test_prior_model_scores_between_zero_and_one_and_explains(allocated_order):
    assessment = risk.assess_order(allocated_order.pk, now=timezone.now())
    assert 0 < assessment.score < 1
    assert assessment.model_version is None
    assert assessment.reasons and all(isinstance(r, str) for r in assessment.reasons)
    assert set(assessment.features) == set(risk.FEATURES)


def test_high_risk_order_is_flagged_to_customer_service_when_advisory(allocated_order):
    policy(threshold=0.6)
    fixed_score_model(bias=2.0)  # 0.88
    services.order_score_risk(order=allocated_order, now=timezone.now())
    recommendation = Recommendation.objects.get()
    assert (recommendation.source, recommendation.action, recommendation.status, recommendation.order_number) == (
        "risk_model",
        "flag_high_risk_order",
        "open",
        allocated_order.number,
    )
    assert recommendation.confidence == pytest.approx(0.8808, abs=1e-3)
    assert recommendation.summary.startswith(f"Fulfilment risk 88% for {allocated_order.number}")
    # Scoring again does not flag twice.
    services.order_score_risk(order=allocated_order, now=timezone.now())
    assert Recommendation.objects.count() == 1


def test_score_below_the_threshold_is_not_flagged(allocated_order):
    policy(threshold=0.9)
    fixed_score_model(bias=2.0)  # 0.88 < 0.9
    services.order_score_risk(order=allocated_order, now=timezone.now())
    assert not Recommendation.objects.exists()


def test_policy_off_or_missing_flags_nothing(allocated_order):
    fixed_score_model(bias=5.0)
    services.order_score_risk(order=allocated_order, now=timezone.now())
    policy(mode=RiskPolicy.Mode.OFF, threshold=0.1)
    services.order_score_risk(order=allocated_order, now=timezone.now())
    assert not Recommendation.objects.exists()


def test_no_flag_after_the_carrier_cutoff(allocated_order, warehouse):
    policy(threshold=0.5)
    fixed_score_model(bias=5.0)
    warehouse.default_cutoff_time = dt.time(10, 0)
    warehouse.save()
    noon = timezone.now().replace(hour=12, minute=0)
    services.order_score_risk(order=allocated_order, now=noon)
    assert not Recommendation.objects.exists()
    services.order_score_risk(order=allocated_order, now=noon.replace(hour=9))
    assert Recommendation.objects.get().params["cutoff_at"].startswith(noon.date().isoformat() + "T10:00")


def test_automatic_flag_raises_a_case_and_records_the_execution(allocated_order):
    from exceptions.models import Case

    policy(mode=RiskPolicy.Mode.AUTOMATIC, threshold=0.6, case_type="partial_shipment_decision")
    fixed_score_model(bias=2.0)
    services.order_score_risk(order=allocated_order, now=timezone.now())
    recommendation = Recommendation.objects.get()
    assert (recommendation.status, recommendation.decided_by) == ("executed", "policy:risk-model")
    case = Case.objects.get(type__code="partial_shipment_decision")
    assert case.context["recommendation_id"] == recommendation.pk


# --- overrides -----------------------------------------------------------------------------


@pytest.fixture
def open_flag(allocated_order):
    policy(threshold=0.5)
    fixed_score_model(bias=3.0)
    services.order_score_risk(order=allocated_order, now=timezone.now())
    return Recommendation.objects.get()


def test_override_needs_a_reason_and_changes_nothing_without_one(open_flag, user_with_role):
    person = user_with_role(username="casey")
    with pytest.raises(InvalidInput):
        services.recommendation_override(recommendation=open_flag, actor=Actor.for_user(person), reason="  ")
    open_flag.refresh_from_db()
    assert (open_flag.status, open_flag.decided_by) == ("open", "")
    assert not DomainEvent.objects.filter(name="recommendation.decided").exists()


def test_override_is_recorded_with_who_and_why(open_flag, user_with_role):
    person = user_with_role(username="casey")
    services.recommendation_override(
        recommendation=open_flag,
        actor=Actor.for_user(person),
        reason="Customer already warned by phone",
        chosen_action="none",
    )
    open_flag.refresh_from_db()
    assert (open_flag.status, open_flag.decided_by, open_flag.decided_reason, open_flag.chosen_action) == (
        "overridden",
        "user:casey",
        "Customer already warned by phone",
        "none",
    )
    latest = open_flag.history.latest("history_id")
    assert (latest.history_actor, latest.history_reason) == ("user:casey", "Customer already warned by phone")
    event = DomainEvent.objects.get(name="recommendation.decided")
    assert (event.payload["status"], event.actor) == ("overridden", "user:casey")


def test_override_from_the_portal_and_role_scoping(client, user_with_role, open_flag):
    from portal.roles import Role

    client.force_login(user_with_role(Role.FINANCE, username="fran"))
    url = f"/automation/recommendations/{open_flag.pk}/override/"
    assert client.post(url, {"reason": "no"}).status_code == 403
    client.force_login(user_with_role(Role.CUSTOMER_SERVICE, username="casey"))
    response = client.post(url, {"reason": "Not needed", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"
    open_flag.refresh_from_db()
    assert (open_flag.status, open_flag.decided_by) == ("overridden", "user:casey")


# --- case resolution suggestions bounded by policy ------------------------------------------


def resolution_model(type_code: str, counts: dict[str, int]) -> RiskModel:
    parameters = {
        **risk.PRIOR,
        "resolution": {
            type_code: {
                "total": sum(counts.values()),
                "counts": counts,
                "features": {r: {"customer_tier": {"standard": n}} for r, n in counts.items()},
            }
        },
    }
    RiskModel.objects.filter(is_active=True).update(is_active=False)
    model = RiskModel.objects.create(version=RiskModel.objects.count() + 1, is_active=True, parameters=parameters)
    risk.forget_model()
    return model


def _raise_case(type_code: str, summary: str = "test case"):
    from exceptions.services import case_raise

    return case_raise(
        type_code=type_code,
        subject_type="test.subject",
        subject_id=summary,
        subject_label=summary,
        summary=summary,
        context={},
        actor=ACTOR,
        reason="test",
    )


def test_suggestion_above_the_threshold_executes_when_the_policy_is_automatic():
    type_code = "damaged_stock"
    resolution_model(type_code, {"acknowledge": 19, "investigate": 1})
    policy(
        decision=RiskPolicy.Decision.CASE_RESOLUTION, mode=RiskPolicy.Mode.AUTOMATIC, threshold=0.8, case_type=type_code
    )
    case = _raise_case(type_code)
    recommendation = services.case_suggest_resolution(case_id=case.pk)
    assert recommendation.confidence >= 0.8
    assert recommendation.reasons[0] == f"19 of 20 past {type_code} cases were resolved with acknowledge"
    assert (recommendation.status, recommendation.decided_by) == ("executed", "policy:risk-model")
    case.refresh_from_db()
    assert (case.status, case.resolution_code, case.resolved_by) == ("resolved", "acknowledge", "policy:risk-model")


def test_suggestion_below_the_threshold_stays_advisory():
    type_code = "damaged_stock"
    resolution_model(type_code, {"acknowledge": 6, "investigate": 4})
    policy(
        decision=RiskPolicy.Decision.CASE_RESOLUTION, mode=RiskPolicy.Mode.AUTOMATIC, threshold=0.8, case_type=type_code
    )
    case = _raise_case(type_code)
    recommendation = services.case_suggest_resolution(case_id=case.pk)
    assert (recommendation.status, recommendation.action) == ("open", "acknowledge")
    assert recommendation.confidence < 0.8
    case.refresh_from_db()
    assert (case.status, case.resolution_code) == ("open", "")


# --- training ------------------------------------------------------------------------------


def _picked_orders(warehouse, customer, item, count: int, *, short_every: int) -> None:
    picker = Actor.system("picker")
    for index in range(count):
        order = orchestration.order_process(
            order=factories.order_for(customer, warehouse, [(item.sku, 4)]), actor=ACTOR
        )
        for task in Task.objects.filter(order=order, kind=Task.Kind.PICK):
            orchestration.task_dispatch(task=task, actor=picker)
            short = short_every and index % short_every == 0
            orchestration.task_complete(task=task, actor=picker, done_quantity=3 if short else 4)


def test_retrain_fits_on_history_and_reports_held_out_precision_and_recall(warehouse, customer):
    bad = factories.stocked_item(warehouse, zone="A", sku="OFTEN-SHORT", quantity=10_000)
    good = factories.stocked_item(warehouse, zone="B", sku="NEVER-SHORT", quantity=10_000)
    _picked_orders(warehouse, customer, bad, 25, short_every=2)
    _picked_orders(warehouse, customer, good, 25, short_every=0)
    Order.objects.update(created_at=timezone.now() - dt.timedelta(days=1))
    out = io.StringIO()
    call_command("retrain_risk", stdout=out)
    text = out.getvalue()
    assert "Risk model v1 (active)" in text
    assert "orders with finished picking: 50 (train 40, held out 10)" in text
    assert "held-out threshold 0.5" in text and "precision" in text and "recall" in text
    model = RiskModel.objects.get(is_active=True)
    weights = dict(zip(model.parameters["features"], model.parameters["weights"], strict=True))
    assert weights["item_short_rate"] > 0
    assert model.metrics["test_orders"] == 10
    # The model learnt the difference: a new order of the often-short item scores higher.
    risky = orchestration.order_process(order=factories.order_for(customer, warehouse, [(bad.sku, 4)]), actor=ACTOR)
    safe = orchestration.order_process(order=factories.order_for(customer, warehouse, [(good.sku, 4)]), actor=ACTOR)
    now = timezone.now()
    assert services.order_score_risk(order=risky, now=now) > services.order_score_risk(order=safe, now=now)


def test_retrain_with_too_little_history_keeps_the_prior():
    out = io.StringIO()
    call_command("retrain_risk", stdout=out)
    assert "keeps its prior weights" in out.getvalue()
    assert RiskModel.objects.get(is_active=True).parameters["kind"] == "prior"


def test_fit_logistic_recovers_a_separable_signal():
    samples = [[x / 10] for x in range(100)]
    labels = [int(x >= 50) for x in range(100)]
    means, scales, weights, bias = risk.fit_logistic(samples, labels, ridge=0.1)
    parameters = {"features": ["x"], "means": means, "scales": scales, "weights": weights, "bias": bias}
    assert risk.predict([9.0], parameters)[0] > 0.95
    assert risk.predict([1.0], parameters)[0] < 0.05
