"""SLA timers and escalation with a controllable clock: due times, pauses, breaches, each step once."""

from __future__ import annotations

import pytest

from exceptions import services
from exceptions.models import Case, CaseEscalation, EscalationStep, Queue, QueueChange, SlaPolicy
from exceptions.tasks import check_sla
from portal.models import DomainEvent
from tests.exceptions.factories import SYSTEM, T0, as_user, at


def raise_case(subject_id="1", type_code="short_pick", now=T0, **kwargs):
    return services.case_raise(
        type_code=type_code,
        subject_type="test.subject",
        subject_id=subject_id,
        summary="test",
        actor=SYSTEM,
        reason="test",
        now=now,
        **kwargs,
    )


def reload(case: Case) -> Case:
    return Case.objects.get(pk=case.pk)


def test_due_times_follow_the_policy():
    case = raise_case()  # short pick: Urgent floor, 15 min / 2 h, at risk at 75 %
    assert (case.first_response_due_at, case.resolution_due_at, case.at_risk_at) == (at(15), at(120), at(90))
    assert case.next_escalation_at == at(15) and case.sla_timer_at == at(15)
    assert case.sla_state == "ok"


def test_the_timer_reads_only_cases_with_something_due(django_assert_num_queries):
    for n in range(30):
        raise_case(str(n))
    with django_assert_num_queries(1):
        assert services.cases_check_sla(now=at(14)) == 0


def test_a_case_goes_at_risk_then_breaches_and_escalates_step_by_step(supervisor):
    case = raise_case()
    services.case_claim(case=case, actor=as_user(supervisor), now=at(5))  # first response in time
    assert services.cases_check_sla(now=at(14)) == 0
    assert services.cases_check_sla(now=at(16)) == 1  # step 1 (15 min): priority up
    case = reload(case)
    assert (case.status, case.priority, case.escalation_level) == ("escalated", 4, 1)
    assert case.next_escalation_at == at(60)
    assert services.cases_check_sla(now=at(30)) == 0
    assert services.cases_check_sla(now=at(91)) == 1  # at risk (90 min) and step 2 (60 min: notify ops admin)
    case = reload(case)
    assert (case.sla_state, case.escalation_level) == ("at_risk", 2)
    assert services.cases_check_sla(now=at(121)) == 1  # breached, step 3
    case = reload(case)
    assert (case.sla_state, case.escalation_level, case.next_escalation_at) == ("breached", 3, None)
    assert list(CaseEscalation.objects.order_by("step__position").values_list("outcome", flat=True)) == [
        "priority raised to 4",
        "Operations admin notified",
        "priority raised to 4",
    ]
    names = list(DomainEvent.objects.filter(name__startswith="case.").values_list("name", flat=True).order_by("pk"))
    assert names == [
        "case.raised",
        "case.assigned",
        "case.escalated",
        "case.sla_changed",
        "case.escalated",
        "case.sla_changed",
        "case.escalated",
    ]
    history = list(case.history.order_by("history_id").values_list("history_actor", flat=True))
    assert history[-1] == "system:sla-timer"
    assert services.cases_check_sla(now=at(500)) == 0  # nothing left to fire


def test_a_missed_first_response_is_a_breach():
    case = raise_case()
    EscalationStep.objects.filter(policy=case.sla_policy).delete()
    Case.objects.filter(pk=case.pk).update(next_escalation_at=None)
    assert services.cases_check_sla(now=at(16)) == 1
    assert reload(case).sla_state == "breached"


def test_running_the_timer_twice_fires_each_step_once():
    case = raise_case()
    assert check_sla.run() == 1  # T0 lies in the past: at the real clock every step is due
    case = reload(case)
    assert case.escalation_level == 3
    assert CaseEscalation.objects.filter(case=case).count() == 3
    assert services.cases_check_sla(now=at(10_000)) == 0
    assert reload(case).escalation_level == 3


def test_a_fired_step_is_never_fired_again_even_if_the_timer_column_is_stale():
    case = raise_case()
    services.cases_check_sla(now=at(16))
    Case.objects.filter(pk=case.pk).update(next_escalation_at=at(0))  # as if a crashed run left it behind
    assert services.cases_check_sla(now=at(17)) == 0
    assert CaseEscalation.objects.filter(case=case).count() == 1
    assert reload(case).priority == 4


def test_waiting_on_external_pauses_the_clock_and_resume_adds_the_paused_time(supervisor):
    case = raise_case()
    actor = as_user(supervisor)
    services.case_start(case=case, actor=actor, now=at(1))
    services.case_wait_on_external(case=case, actor=actor, reason="Carrier to confirm", now=at(10))
    assert services.cases_check_sla(now=at(300)) == 0  # paused: nothing fires
    case = reload(case)
    assert (case.sla_state, case.escalation_level, case.next_escalation_at) == ("paused", 0, None)
    assert case.sla_timer_at is None
    services.case_resume(case=case, actor=actor, reason="Confirmed", now=at(70))
    case = reload(case)
    assert case.paused_seconds == 3600
    assert (case.resolution_due_at, case.at_risk_at, case.next_escalation_at) == (at(180), at(150), at(75))
    assert case.sla_state == "ok"
    assert services.cases_check_sla(now=at(74)) == 0
    assert services.cases_check_sla(now=at(76)) == 1
    assert reload(case).escalation_level == 1


def test_a_policy_that_does_not_pause_keeps_the_clock_running(supervisor):
    SlaPolicy.objects.filter(name="Urgent floor").update(pause_while_waiting=False)
    case = raise_case()
    services.case_wait_on_external(case=case, actor=as_user(supervisor), reason="Asked", now=at(1))
    case = reload(case)
    assert case.paused_at is None and case.next_escalation_at == at(15)
    assert services.cases_check_sla(now=at(16)) == 1
    case = reload(case)
    assert (case.status, case.escalation_level, case.priority) == ("waiting_external", 1, 4)


def test_a_move_queue_step_moves_the_case_and_writes_both_queue_changes():
    policy = SlaPolicy.objects.create(name="Move", first_response_minutes=5, resolution_minutes=60)
    EscalationStep.objects.create(
        policy=policy, position=1, after_minutes=30, action="move_queue", target_queue=Queue.objects.get(code="finance")
    )
    from exceptions.models import ExceptionType

    ExceptionType.objects.filter(code="damaged_stock").update(sla_policy=policy)
    case = raise_case(type_code="damaged_stock")
    assert services.cases_check_sla(now=at(31)) == 1
    case = reload(case)
    assert case.queue.code == "finance"
    kinds = list(QueueChange.objects.filter(case=case).order_by("pk").values_list("queue__code", "kind"))
    assert ("warehouse_supervisor", "removed") in kinds and ("finance", "added") in kinds
    event = DomainEvent.objects.filter(name="case.escalated").get()
    assert event.payload["previous_queue"] == "warehouse_supervisor"


def test_closed_cases_are_left_alone(supervisor):
    case = raise_case(type_code="automation_fault")
    services.case_resolve(case=case, resolution="acknowledge", actor=as_user(supervisor), reason="Cleared", now=at(3))
    assert services.cases_check_sla(now=at(1000)) == 0
    assert not CaseEscalation.objects.exists()
    assert reload(case).sla_timer_at is None


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_concurrent_timer_runs_fire_each_step_once():
    """Two processes run the timer at the same moment over the same due cases."""
    from tests.exceptions.processes import run_in_processes

    ids = [raise_case(str(n)).pk for n in range(20)]
    results = run_in_processes("tests.exceptions.processes:check_sla_at", [at(16).isoformat()] * 2)
    assert sum(results) == 20  # every case changed once, by one of the two
    assert CaseEscalation.objects.filter(case_id__in=ids).count() == 20
    assert set(Case.objects.filter(pk__in=ids).values_list("escalation_level", flat=True)) == {1}
    for code in ["warehouse_supervisor"]:
        seqs = list(QueueChange.objects.filter(queue__code=code).order_by("seq").values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1))
