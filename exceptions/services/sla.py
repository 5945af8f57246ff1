"""The SLA clock: due times, pauses, the derived timers, and the beat job that escalates (each step once)."""

from __future__ import annotations

import datetime as dt

from django.db import IntegrityError, transaction

from exceptions.models import (
    Case,
    CaseEscalation,
    EscalationStep,
    Queue,
    QueueChange,
    SlaPolicy,
)
from exceptions.services.common import (
    SLA_TIMER,
    _lock_case,
    _move,
    _publish,
)
from portal.actors import Actor, stamp_history
from portal.domain import transition
from portal.live import broadcast, role_group
from portal.roles import Role

# --- SLA clock -----------------------------------------------------------------------


def _active_seconds(case: Case, now: dt.datetime) -> float:
    """Seconds the SLA clock has run: since the case was raised, minus time paused."""
    paused_now = (now - case.paused_at).total_seconds() if case.paused_at else 0
    return (now - case.created_at).total_seconds() - case.paused_seconds - paused_now


def _steps(case: Case) -> list[EscalationStep]:
    if not case.sla_policy_id:
        return []
    return list(EscalationStep.objects.filter(policy_id=case.sla_policy_id).order_by("after_minutes", "position"))


def _next_escalation_at(case: Case, steps: list[EscalationStep] | None = None) -> dt.datetime | None:
    """When the earliest step that has not fired falls due on the running clock (None while paused)."""
    if case.paused_at or not case.sla_policy_id:
        return None
    steps = _steps(case) if steps is None else steps
    fired = set(CaseEscalation.objects.filter(case=case).values_list("step_id", flat=True)) if case.pk else set()
    start = case.created_at + dt.timedelta(seconds=case.paused_seconds)
    for step in steps:
        if step.pk not in fired:
            return start + dt.timedelta(minutes=step.after_minutes)
    return None


def _sla_state_at(case: Case, now: dt.datetime) -> str:
    if case.paused_at:
        return Case.SlaState.PAUSED
    if case.resolution_due_at and now >= case.resolution_due_at:
        return Case.SlaState.BREACHED
    if case.first_responded_at is None and case.first_response_due_at and now >= case.first_response_due_at:
        return Case.SlaState.BREACHED
    if case.at_risk_at and now >= case.at_risk_at:
        return Case.SlaState.AT_RISK
    return Case.SlaState.OK


def _start_clock(case: Case, policy: SlaPolicy | None, now: dt.datetime) -> None:
    case.sla_policy = policy
    if policy is None:
        case.first_response_due_at = case.resolution_due_at = case.at_risk_at = None
        return
    case.first_response_due_at = now + dt.timedelta(minutes=policy.first_response_minutes)
    case.resolution_due_at = now + dt.timedelta(minutes=policy.resolution_minutes)
    case.at_risk_at = now + dt.timedelta(minutes=policy.resolution_minutes * policy.at_risk_percent / 100)
    case.sla_state = _sla_state_at(case, now)


def _shift_clock(case: Case, paused: dt.timedelta) -> None:
    """After a pause the due times move by the time paused."""
    if case.resolution_due_at:
        case.resolution_due_at += paused
    if case.first_response_due_at and case.first_responded_at is None:
        case.first_response_due_at += paused
    if case.at_risk_at:
        case.at_risk_at += paused


def _sla_timer_at(case: Case) -> dt.datetime | None:
    """The next moment the beat timer has something to do for this case (None: paused, closed or no clock)."""
    if not case.is_active or case.paused_at:
        return None
    moments = [case.next_escalation_at]
    if case.sla_state == Case.SlaState.OK:
        moments.append(case.at_risk_at)
    if case.sla_state != Case.SlaState.BREACHED:
        moments.append(case.resolution_due_at)
        if case.first_responded_at is None:
            moments.append(case.first_response_due_at)
    due = [moment for moment in moments if moment is not None]
    return min(due) if due else None


def _store_clock(case: Case, now: dt.datetime, *, steps: list[EscalationStep] | None = None) -> bool:
    """Recompute the SLA state and timers and write them (derived columns: no history row); True if the state moved."""
    previous = case.sla_state
    case.sla_state = _sla_state_at(case, now) if case.is_active else case.sla_state
    case.next_escalation_at = _next_escalation_at(case, steps) if case.is_active else None
    case.sla_timer_at = _sla_timer_at(case)
    Case.objects.filter(pk=case.pk).update(
        sla_state=case.sla_state,
        at_risk_at=case.at_risk_at,
        next_escalation_at=case.next_escalation_at,
        sla_timer_at=case.sla_timer_at,
    )
    return case.sla_state != previous


# --- the SLA timer -------------------------------------------------------------------


def cases_check_sla(*, now: dt.datetime, actor: Actor = SLA_TIMER, limit: int = 500) -> int:
    """The beat timer: mark cases at risk or breached and fire due escalation steps, each step once per case.

    Reads only cases whose next timer (``sla_timer_at``, partially indexed) has passed; each case
    is handled in its own short transaction. Returns how many cases changed.
    """
    due = (
        Case.objects.filter(sla_timer_at__lte=now, status__in=Case.ACTIVE_STATES, paused_at__isnull=True)
        .order_by("sla_timer_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    changed = 0
    for case_id in list(due):
        with transaction.atomic():
            changed += _check_case(case_id, now=now, actor=actor)
    return changed


def _check_case(case_id: int, *, now: dt.datetime, actor: Actor) -> int:
    case = _lock_case(case_id)
    if not case.is_active or case.paused_at:
        return 0
    steps = _steps(case)
    touched = False
    if _store_clock(case, now, steps=steps):
        touched = True
        _publish(
            case,
            "case.sla_changed",
            actor=actor,
            reason=f"SLA {case.get_sla_state_display().lower()}",
            now=now,
            changes=[(case.queue, QueueChange.Kind.UPDATED)],
        )
    active_minutes = _active_seconds(case, now) / 60
    for step in steps:
        if step.after_minutes <= active_minutes and _fire_step(case, step, now=now, actor=actor):
            touched = True
    _store_clock(case, now, steps=steps)
    return int(touched)


def _fire_step(case: Case, step: EscalationStep, *, now: dt.datetime, actor: Actor) -> bool:
    """Record the step as fired (once: the unique pair refuses a second row) and apply it."""
    try:
        with transaction.atomic():
            record = CaseEscalation.objects.create(case=case, step=step, fired_at=now)
    except IntegrityError:
        return False  # fired by an earlier or concurrent run
    reason = (
        f"SLA escalation step {step.position} ({(case.sla_policy or step.policy).name}): after {step.after_minutes} min"
    )
    previous = case.queue
    changes: list[tuple[Queue, str]] = [(case.queue, QueueChange.Kind.UPDATED)]
    if step.action == EscalationStep.Action.RAISE_PRIORITY:
        case.priority = min(4, case.priority + 1)
        outcome = f"priority raised to {case.priority}"
    elif step.action == EscalationStep.Action.MOVE_QUEUE and step.target_queue_id:
        target = Queue.objects.get(pk=step.target_queue_id)
        if target.pk != case.queue_id:
            changes = _move(case, target)
            outcome = f"moved to the {target.name} queue"
        else:
            outcome = f"already in the {target.name} queue"
    elif step.action == EscalationStep.Action.NOTIFY and step.notify_role:
        outcome = f"{Role(step.notify_role).label} notified"
    else:
        outcome = "nothing to do (step incomplete)"
    record.outcome = outcome[:200]
    record.save(update_fields=["outcome"])
    fields = ["escalation_level", "priority", "queue", "assignee"]
    if case.status in (Case.Status.OPEN, Case.Status.ASSIGNED, Case.Status.IN_PROGRESS):
        transition(case, "escalate", actor=actor, reason=f"{reason}: {outcome}", update_fields=fields)
    else:
        case.escalation_level += 1
        stamp_history(case, actor=actor, reason=f"{reason}: {outcome}")
        case.save(update_fields=[*fields, "updated_at"])
    extra = {"previous_queue": previous.code} if previous.pk != case.queue_id else {}
    event = _publish(
        case,
        "case.escalated",
        actor=actor,
        reason=f"{reason}: {outcome}",
        now=now,
        changes=changes,
        step=step.position,
        action=step.action,
        outcome=outcome,
        **extra,
    )
    if step.action == EscalationStep.Action.NOTIFY and step.notify_role:
        data = {
            "type": "notification",
            "seq": event.pk,
            "case_id": case.pk,
            "message": f"Case {case.pk} ({case.type.name}, {case.queue.name}) escalated: {reason}",
            "order": case.order_number,
            "source": actor.label,
        }
        groups = {role_group(step.notify_role)}
        transaction.on_commit(lambda: broadcast(groups, data))
    return True
