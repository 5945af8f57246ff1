"""Raising, deduplicating and working cases: history, events and the gapless queue sequence."""

from __future__ import annotations

import pytest

from exceptions import services
from exceptions.models import Case, QueueChange
from portal.domain import InvalidInput, NotFound, PermissionRefused, TransitionRefused
from portal.models import DomainEvent
from tests.exceptions.factories import SYSTEM, T0, as_user, at


def raise_case(subject_id="1", type_code="short_pick", **kwargs):
    kwargs.setdefault("summary", f"Problem with {subject_id}")
    kwargs.setdefault("now", T0)
    return services.case_raise(
        type_code=type_code,
        subject_type="test.subject",
        subject_id=subject_id,
        actor=kwargs.pop("actor", SYSTEM),
        reason=kwargs.pop("reason", "test"),
        **kwargs,
    )


def test_raise_routes_to_the_default_queue_with_history_event_and_queue_change(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        case = raise_case(context={"sku": "A"}, order_number="SO1")
    assert (case.status, case.queue.code, case.severity, case.priority) == ("open", "warehouse_supervisor", "high", 3)
    assert case.routed_by is None and case.context["routing"].startswith("default route")
    assert case.first_response_due_at == at(15) and case.resolution_due_at == at(120)
    record = case.history.get()
    assert (record.history_actor, record.history_reason, record.status) == ("system:test", "test", "open")
    event = DomainEvent.objects.get(name="case.raised")
    assert event.payload | {} == event.payload
    assert {k: event.payload[k] for k in ["case_id", "type", "queue", "status", "severity", "order_number"]} == {
        "case_id": case.pk,
        "type": "short_pick",
        "queue": "warehouse_supervisor",
        "status": "open",
        "severity": "high",
        "order_number": "SO1",
    }
    change = QueueChange.objects.get()
    assert (change.queue.code, change.seq, change.kind, change.status) == ("warehouse_supervisor", 1, "added", "open")
    assert case.last_seq == event.pk
    assert len(callbacks) >= 1


def test_repeat_adds_an_occurrence_and_merges_context_instead_of_a_second_case():
    first = raise_case(context={"lines": {"1": {"qty": 1}}, "a": 1}, materiality=10)
    again = raise_case(context={"lines": {"2": {"qty": 2}}, "b": 2}, materiality=40, severity="critical")
    assert again.pk == first.pk
    assert Case.objects.count() == 1
    again.refresh_from_db()
    assert again.occurrences == 2
    assert again.context["lines"] == {"1": {"qty": 1}, "2": {"qty": 2}}
    assert (again.context["a"], again.context["b"]) == (1, 2)
    assert str(again.materiality) == "40.00" and again.severity == "critical"
    assert list(DomainEvent.objects.order_by("pk").values_list("name", flat=True)) == ["case.raised", "case.repeated"]
    assert list(QueueChange.objects.values_list("seq", "kind")) == [(1, "added"), (2, "updated")]


def test_a_closed_case_does_not_absorb_a_new_occurrence(supervisor):
    first = raise_case(type_code="automation_fault")
    services.case_resolve(case=first, resolution="acknowledge", actor=as_user(supervisor), reason="Fixed the jam")
    second = raise_case(type_code="automation_fault")
    assert second.pk != first.pk and second.occurrences == 1


def test_bad_input_raises_nothing():
    with pytest.raises(NotFound):
        raise_case(type_code="no_such_type")
    with pytest.raises(InvalidInput) as error:
        services.case_raise(type_code="short_pick", summary="", actor=SYSTEM, reason="x", severity="huge")
    assert set(error.value.fields) == {"subject", "summary", "severity"}
    assert not Case.objects.exists() and not DomainEvent.objects.exists() and not QueueChange.objects.exists()


def test_disabled_type_raises_no_case():
    from exceptions.models import ExceptionType

    ExceptionType.objects.filter(code="damaged_stock").update(enabled=False)
    assert raise_case(type_code="damaged_stock") is None
    assert not Case.objects.exists()


def test_claim_start_wait_resume_record_actor_and_reason(supervisor):
    case = raise_case()
    actor = as_user(supervisor)
    services.case_claim(case=case, actor=actor, now=at(5))
    case.refresh_from_db()
    assert (case.status, case.assignee, case.first_responded_at) == ("assigned", supervisor, at(5))
    services.case_start(case=case, actor=actor, now=at(6))
    services.case_wait_on_external(case=case, actor=actor, reason="Asked the customer", now=at(10))
    case.refresh_from_db()
    assert (case.status, case.paused_at, case.sla_state) == ("waiting_external", at(10), "paused")
    services.case_resume(case=case, actor=actor, reason="Customer answered", now=at(40))
    case.refresh_from_db()
    assert (case.status, case.paused_at, case.paused_seconds) == ("in_progress", None, 30 * 60)
    assert case.resolution_due_at == at(150)
    reasons = list(case.history.order_by("history_id").values_list("history_actor", "history_reason", "status"))
    assert reasons == [
        ("system:test", "test", "open"),
        ("user:sam", "Claimed", "assigned"),
        ("user:sam", "Started", "in_progress"),
        ("user:sam", "Asked the customer", "waiting_external"),
        ("user:sam", "Customer answered", "in_progress"),
    ]
    names = list(DomainEvent.objects.order_by("pk").values_list("name", flat=True))
    assert names == ["case.raised", "case.assigned", "case.started", "case.waiting", "case.resumed"]


def test_a_user_of_another_role_is_refused_and_nothing_changes(service):
    case = raise_case()
    events, changes = DomainEvent.objects.count(), QueueChange.objects.count()
    with pytest.raises(PermissionRefused):
        services.case_claim(case=case, actor=as_user(service))
    with pytest.raises(PermissionRefused):
        services.case_resolve(case=case, resolution="backorder", actor=as_user(service), reason="x")
    with pytest.raises(PermissionRefused):
        services.case_comment(case=case, actor=as_user(service), body="hello")
    case.refresh_from_db()
    assert (case.status, case.assignee_id) == ("open", None)
    assert (DomainEvent.objects.count(), QueueChange.objects.count()) == (events, changes)
    assert case.history.count() == 1


def test_assignee_must_work_the_queue_and_ops_admin_may_reassign(supervisor, service, opsadmin):
    case = raise_case()
    with pytest.raises(InvalidInput):
        services.case_assign(case=case, assignee=service, actor=as_user(supervisor))
    services.case_assign(case=case, assignee=supervisor, actor=as_user(opsadmin), reason="Covering the shift")
    case.refresh_from_db()
    assert case.assignee == supervisor


def test_route_to_moves_the_case_between_queues(supervisor):
    case = raise_case()
    services.case_route_to(case=case, queue_code="customer_service", actor=as_user(supervisor), reason="Customer call")
    case.refresh_from_db()
    assert case.queue.code == "customer_service"
    changes = list(QueueChange.objects.order_by("pk").values_list("queue__code", "seq", "kind"))
    assert changes == [
        ("warehouse_supervisor", 1, "added"),
        ("warehouse_supervisor", 2, "removed"),
        ("customer_service", 1, "added"),
    ]
    event = DomainEvent.objects.get(name="case.routed")
    assert (event.payload["queue"], event.payload["previous_queue"]) == ("customer_service", "warehouse_supervisor")
    with pytest.raises(PermissionRefused):
        services.case_route_to(case=case, queue_code="finance", actor=as_user(supervisor), reason="x")
    with pytest.raises(InvalidInput):
        services.case_route_to(case=case, queue_code="nope", actor=SYSTEM, reason="x")


def test_comment_and_cancel(supervisor):
    case = raise_case()
    comment = services.case_comment(case=case, actor=as_user(supervisor), body="  Looking at it  ")
    assert comment.body == "Looking at it"
    with pytest.raises(InvalidInput):
        services.case_comment(case=case, actor=as_user(supervisor), body="   ")
    with pytest.raises(InvalidInput):
        services.case_cancel(case=case, actor=as_user(supervisor), reason=" ")
    services.case_cancel(case=case, actor=as_user(supervisor), reason="Raised in error")
    case.refresh_from_db()
    assert (case.status, case.resolution_note, case.resolved_by) == ("cancelled", "Raised in error", "user:sam")
    assert QueueChange.objects.order_by("-pk").first().kind == "removed"


def test_bulk_assign_rechecks_each_case(supervisor):
    mine = raise_case("1")
    other = raise_case("2", type_code="credit_hold")
    result = services.cases_bulk_assign(
        case_ids=[mine.pk, other.pk, 999999], assignee=supervisor, actor=as_user(supervisor), reason="Mine now"
    )
    assert result["done"] == [mine.pk]
    assert set(result["refused"]) == {other.pk, 999999}
    other.refresh_from_db()
    assert other.status == "open"


def test_bulk_resolve_rechecks_each_case(supervisor):
    cases = [raise_case(str(n), type_code="automation_fault") for n in range(3)]
    hold = raise_case("9", type_code="credit_hold")
    result = services.cases_bulk_resolve(
        case_ids=[c.pk for c in cases] + [hold.pk], resolution="acknowledge", actor=as_user(supervisor), reason="ok"
    )
    assert result["done"] == [c.pk for c in cases]
    assert list(result["refused"]) == [hold.pk]
    assert Case.objects.filter(status="resolved").count() == 3


def test_queue_sequence_is_gapless_per_queue(supervisor):
    for n in range(5):
        case = raise_case(str(n))
        services.case_claim(case=case, actor=as_user(supervisor))
    raise_case("x", type_code="credit_hold")
    for code in ["warehouse_supervisor", "finance"]:
        seqs = list(QueueChange.objects.filter(queue__code=code).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
    from exceptions.models import Queue

    assert Queue.objects.get(code="warehouse_supervisor").last_seq == 10


FSM = {
    "assign": {"open", "assigned", "escalated"},
    "start": {"open", "assigned", "escalated"},
    "wait_on_external": {"open", "assigned", "in_progress", "escalated"},
    "resume": {"waiting_external"},
    "escalate": {"open", "assigned", "in_progress"},
    "resolve": {"open", "assigned", "in_progress", "waiting_external", "escalated"},
    "auto_resolve": {"open", "assigned", "in_progress", "waiting_external", "escalated"},
    "cancel": {"open", "assigned", "in_progress", "waiting_external", "escalated"},
}
STATES = [s.value for s in Case.Status]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("name", list(FSM))
def test_transition_matrix(name, state):
    from django_fsm import can_proceed

    case = Case(status=state)
    assert can_proceed(getattr(case, name)) == (state in FSM[name])


def test_a_refused_transition_changes_nothing(supervisor):
    case = raise_case()
    services.case_cancel(case=case, actor=as_user(supervisor), reason="dup")
    before = DomainEvent.objects.count()
    with pytest.raises(TransitionRefused):
        services.case_start(case=case, actor=as_user(supervisor))
    assert DomainEvent.objects.count() == before


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_processes_raising_the_same_case_at_once_make_one_case_with_two_occurrences():
    from tests.exceptions.processes import run_in_processes

    for _ in range(3):
        Case.objects.all().delete()
        ids = run_in_processes("tests.exceptions.processes:raise_same_case", ["one", "two"])
        assert len(set(ids)) == 1
        case = Case.objects.get()
        assert case.occurrences == 2
        assert list(
            DomainEvent.objects.filter(subject_id=str(case.pk)).values_list("name", flat=True).order_by("pk")
        ) == [
            "case.raised",
            "case.repeated",
        ]


def test_manual_escalation_raises_priority_and_may_move_the_case(supervisor):
    case = raise_case()
    services.case_escalate(
        case=case, actor=as_user(supervisor), reason="Customer chasing", queue_code="customer_service"
    )
    case.refresh_from_db()
    assert (case.status, case.priority, case.escalation_level, case.queue.code) == (
        "escalated",
        4,
        1,
        "customer_service",
    )
    event = DomainEvent.objects.get(name="case.escalated")
    assert event.payload["previous_queue"] == "warehouse_supervisor"


def test_every_queue_change_reaches_the_role_group_as_a_hint_after_commit(
    django_capture_on_commit_callbacks, supervisor
):
    from tests.live_listener import GroupListener

    with GroupListener("role.warehouse_supervisor") as live:
        with django_capture_on_commit_callbacks(execute=True):
            case = raise_case()
        message = live.next()
        assert message == {
            "type": "live.change",
            "data": {
                "type": "queue_change",
                "queue": "warehouse_supervisor",
                "seq": 1,
                "case_id": case.pk,
                "kind": "added",
                "status": "open",
            },
        }
        with django_capture_on_commit_callbacks(execute=True):
            services.case_claim(case=case, actor=as_user(supervisor))
        message = live.next()
        assert (message["data"]["seq"], message["data"]["kind"], message["data"]["status"]) == (
            2,
            "updated",
            "assigned",
        )


def test_the_sla_timer_runs_every_30_seconds_in_beat():
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["exceptions-check-sla"] == {
        "task": "exceptions.tasks.check_sla",
        "schedule": 30.0,
    }


@pytest.mark.parametrize("bad", ["abc", None, 999999])
def test_an_unknown_case_is_not_found(bad, supervisor):
    with pytest.raises(NotFound):
        services.case_resolve(case=bad, resolution="acknowledge", actor=as_user(supervisor), reason="x")
    with pytest.raises(NotFound):
        services.case_claim(case=bad, actor=as_user(supervisor))
