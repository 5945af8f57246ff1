"""Every change to exception cases: raise (routed, deduplicated, on an SLA clock), work, escalate, resolve.

Each public function is one business action: keyword-only, takes the actor and a reason,
runs in one transaction, and for every transition does the same steps in the same order:
lock the case → ``portal.domain.transition`` → history (actor, reason) → ``QueueChange`` rows
(gapless per queue, live hint on commit) → the ``case.*`` event → ``case.last_seq``.

Rules written down once:

* **Lock order**: the case's cause first (its order, receipt or count — the rows the core's
  services lock before they publish the events that raise cases), then the case row, then
  queue rows (``Queue.last_seq``) in primary-key order. A resolution therefore locks its
  cause before the case, so it never waits on a short pick that is waiting on it.
* **One active case per (type, subject)**: the partial unique constraint decides; a raise
  locks the active case and adds an occurrence, and an insert that loses the race to a
  concurrent raise retries in a savepoint and becomes an occurrence.
* **Permissions live here**, for people (``actor.kind == "user"``): a user acts on cases of
  their roles' queues only (an operations admin may also assign and route), resolves only
  with a resolution that names one of their roles, and never approves what they requested.
  Policies, rules and system jobs are bounded by their own configuration.
* **SLA timers are rows**: due times and the next timers (``at_risk_at``, ``next_escalation_at``
  and their earliest, ``sla_timer_at``, which the beat job reads) are columns, so a restart
  loses nothing; a fired escalation step is a ``CaseEscalation`` row whose unique
  (case, step) pair makes a second firing impossible.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextvars import ContextVar
from decimal import Decimal, InvalidOperation
from typing import NamedTuple

from django.apps import apps
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from exceptions.models import (
    SEVERITY_RANK,
    Case,
    CaseComment,
    CaseEscalation,
    EscalationStep,
    ExceptionType,
    Queue,
    QueueChange,
    RoutingRule,
    Severity,
    SlaPolicy,
)
from portal.actors import Actor, stamp_history
from portal.domain import DomainError, InvalidInput, NotFound, PermissionRefused, TransitionRefused, transition
from portal.events import emit
from portal.live import broadcast, role_group
from portal.roles import Role, roles_of

logger = logging.getLogger(__name__)

SLA_TIMER = Actor.system("sla-timer")
MAX_BULK = 500
MAX_COMMENT = 5000
# Causes whose rows are locked before the case (see the lock order above), by subject type.
CAUSE_SUBJECTS = {"orchestration.order", "inventory.receipt", "inventory.cyclecount"}

# Cases whose resolution is running in this context: the cause disappearing as a result of the
# resolution (credit released, order cancelled, message replayed) must not auto-resolve them first.
_resolving: ContextVar[frozenset[int]] = ContextVar("exceptions_resolving", default=frozenset())


# --- helpers -------------------------------------------------------------------------


def _require_reason(reason: str) -> None:
    if not reason or not str(reason).strip():
        raise InvalidInput("A reason is required.", fields={"reason": ["Say why, for the record."]})


def _case_id(case: Case | int) -> int:
    if isinstance(case, Case):
        return case.pk
    try:
        return int(case)
    except (TypeError, ValueError):
        raise NotFound(f"No case {case!r}.") from None


def _lock_case(case: Case | int) -> Case:
    try:
        return (
            Case.objects.select_for_update(of=("self",))
            .select_related("type", "queue", "warehouse", "assignee", "sla_policy")
            .get(pk=_case_id(case))
        )
    except Case.DoesNotExist:
        raise NotFound(f"No case {case}.") from None


def _lock_cause(case: Case | int) -> None:
    """Lock the row that caused the case before the case itself (the fixed lock order)."""
    row = Case.objects.filter(pk=_case_id(case)).values("order_number", "subject_type", "subject_id").first()
    if row is None:
        raise NotFound(f"No case {case}.")
    if row["order_number"]:
        order_model = apps.get_model("orchestration", "Order")
        order_model.objects.select_for_update(of=("self",)).filter(number=row["order_number"]).first()
    elif row["subject_type"] in CAUSE_SUBJECTS and row["subject_id"].isdigit():
        model = apps.get_model(*row["subject_type"].split("."))
        model.objects.select_for_update(of=("self",)).filter(pk=int(row["subject_id"])).first()


def _user_label(user) -> str:
    return user.get_username() if user is not None else ""


def _payload(case: Case, **extra) -> dict:
    return {
        "case_id": case.pk,
        "type": case.type.code,
        "queue": case.queue.code,
        "status": case.status,
        "severity": case.severity,
        "priority": case.priority,
        "order_number": case.order_number,
        "order": case.order_number,
        "warehouse": case.warehouse.code if case.warehouse_id else "",
        "customer_tier": case.customer_tier,
        "materiality": str(case.materiality),
        "subject_type": case.subject_type,
        "subject_id": case.subject_id,
        "occurrences": case.occurrences,
        "assignee": _user_label(case.assignee) if case.assignee_id else "",
        "sla_state": case.sla_state,
        **extra,
    }


def _queue_change(case: Case, queue: Queue, kind: str, now: dt.datetime) -> QueueChange:
    """Number the change in the queue's sequence (the UPDATE holds the queue row until commit) and hint on commit."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Queue._meta.db_table} SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq", [queue.pk]
        )
        seq = cursor.fetchone()[0]
    queue.last_seq = seq
    change = QueueChange.objects.create(queue=queue, seq=seq, case=case, kind=kind, status=case.status, at=now)
    hint = {
        "type": "queue_change",
        "queue": queue.code,
        "seq": seq,
        "case_id": case.pk,
        "kind": kind,
        "status": case.status,
    }
    groups = {role_group(queue.role)}
    transaction.on_commit(lambda: broadcast(groups, hint))
    return change


def _publish(
    case: Case,
    name: str,
    *,
    actor: Actor,
    reason: str,
    now: dt.datetime,
    changes: list[tuple[Queue, str]] | None = None,
    **extra,
):
    """Queue changes (queues in primary-key order), then the event, then the case's live sequence."""
    for queue, kind in sorted(changes or [], key=lambda change: change[0].pk):
        _queue_change(case, queue, kind, now)
    event = emit(name, subject=case, payload=_payload(case, **extra), actor=actor, reason=reason)
    updates = {"last_seq": Greatest(F("last_seq"), event.pk)}
    if not case.is_active:  # closed: the SLA timer has nothing more to do
        updates.update(next_escalation_at=None, sla_timer_at=None)
    Case.objects.filter(pk=case.pk).update(**updates)
    case.last_seq = max(case.last_seq or 0, event.pk)
    return event


def _check_queue_role(actor: Actor, queue: Queue, *, admin_may: bool = False) -> None:
    if actor.kind != "user":
        return
    roles = roles_of(actor.user)
    if queue.role in roles or (admin_may and Role.OPERATIONS_ADMIN in roles):
        return
    raise PermissionRefused(f"This case is in the {queue.name} queue, which none of your roles works.")


def _require_active(case: Case, doing: str) -> None:
    if not case.is_active:
        raise TransitionRefused(f"Case {case.pk} is {case.get_status_display().lower()}; it cannot be {doing}.")


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
            before = RoutingRule.objects.select_for_update().filter(pk=rule.pk).values(*decisive, "version").first()
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
    moments = [moment for moment in moments if moment is not None]
    return min(moments) if moments else None


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


# --- raising -------------------------------------------------------------------------


def _as_materiality(value) -> Decimal:
    if value is None or value == "":
        return Decimal("0")
    try:
        amount = Decimal(str(value)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        raise InvalidInput("Materiality must be a number.", fields={"materiality": ["A number."]}) from None
    if amount < 0:
        amount = -amount  # a variance's value at stake, whichever direction
    return amount


def _merge_context(old: dict, new: dict) -> dict:
    """New values win; nested dicts (lines of one receipt, …) are merged one level deep."""
    merged = dict(old or {})
    for key, value in (new or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _constraint_of(error: IntegrityError) -> str:
    diag = getattr(getattr(error, "__cause__", None), "diag", None)
    return getattr(diag, "constraint_name", "") or ""


def case_raise(
    *,
    type_code: str,
    subject=None,
    subject_type: str = "",
    subject_id: str = "",
    subject_label: str = "",
    summary: str,
    context: dict | None = None,
    actor: Actor,
    reason: str,
    severity: str | None = None,
    materiality=None,
    warehouse=None,
    customer_tier: str = "",
    order_number: str = "",
    source_event_id: int | None = None,
    now: dt.datetime | None = None,
) -> Case | None:
    """Open a routed case with its SLA clock, or add an occurrence to the active case for the same subject.

    Returns None (and logs) when the type is disabled: an operations admin switched it off.
    """
    now = now or timezone.now()
    if subject is not None:
        subject_type, subject_id = subject._meta.label_lower, str(subject.pk)
        subject_label = subject_label or str(subject)
    subject_id = str(subject_id or "")
    errors: dict[str, list[str]] = {}
    if not subject_type or not subject_id:
        errors["subject"] = ["Name what the case is about (subject type and id)."]
    if not summary or not str(summary).strip():
        errors["summary"] = ["Say what happened."]
    if severity is not None and severity not in Severity.values:
        errors["severity"] = [f"One of {', '.join(Severity.values)}."]
    if errors:
        raise InvalidInput("The case has invalid values; nothing was raised.", fields=errors)
    amount = _as_materiality(materiality)
    exception_type = ExceptionType.objects.select_related("default_queue", "sla_policy").filter(code=type_code).first()
    if exception_type is None:
        raise NotFound(f"No exception type {type_code!r}.", fields={"type_code": ["Unknown exception type."]})
    if not exception_type.enabled:
        logger.info("exception type disabled; no case raised", extra={"type_code": type_code})
        return None
    fields = {
        "exception_type": exception_type,
        "subject_type": subject_type[:60],
        "subject_id": subject_id[:64],
        "subject_label": (subject_label or f"{subject_type} {subject_id}")[:160],
        "summary": str(summary).strip()[:300],
        "context": dict(context or {}),
        "severity": severity or exception_type.default_severity,
        "materiality": amount,
        "warehouse": warehouse,
        "customer_tier": customer_tier or "",
        "order_number": order_number or "",
        "source_event_id": source_event_id,
    }
    for _attempt in range(3):
        try:
            with transaction.atomic():
                existing = (
                    Case.objects.active()
                    .filter(type=exception_type, subject_type=fields["subject_type"], subject_id=fields["subject_id"])
                    .select_for_update(of=("self",))
                    .select_related("type", "queue", "warehouse", "assignee", "sla_policy")
                    .first()
                )
                if existing is not None:
                    return _add_occurrence(existing, fields, actor=actor, reason=reason, now=now)
                return _open_case(fields, actor=actor, reason=reason, now=now)
        except IntegrityError as error:
            if _constraint_of(error) != "case_one_active_per_subject":
                raise
            # A concurrent raise for the same subject committed first: become its occurrence.
            continue
    raise DomainError("The case could not be raised because of concurrent changes; try again.", code="busy")


def _open_case(fields: dict, *, actor: Actor, reason: str, now: dt.datetime) -> Case:
    exception_type = fields["exception_type"]
    route = routing_match(
        exception_type=exception_type,
        severity=fields["severity"],
        materiality=fields["materiality"],
        warehouse=fields["warehouse"],
        customer_tier=fields["customer_tier"],
    )
    case = Case(
        type=exception_type,
        queue=route.queue,
        routed_by=route.rule,
        routed_by_version=route.rule.version if route.rule else None,
        severity=fields["severity"],
        priority=route.priority,
        materiality=fields["materiality"],
        warehouse=fields["warehouse"],
        customer_tier=fields["customer_tier"],
        subject_type=fields["subject_type"],
        subject_id=fields["subject_id"],
        subject_label=fields["subject_label"],
        order_number=fields["order_number"],
        summary=fields["summary"],
        context={**fields["context"], "routing": route.explanation},
        source_event_id=fields["source_event_id"],
        raised_by=actor.label[:160],
        created_at=now,
    )
    _start_clock(case, route.sla_policy, now)
    case.next_escalation_at = _next_escalation_at(case)
    case.sla_timer_at = _sla_timer_at(case)
    stamp_history(case, actor=actor, reason=reason)
    case.save()
    _publish(
        case,
        "case.raised",
        actor=actor,
        reason=reason,
        now=now,
        changes=[(case.queue, QueueChange.Kind.ADDED)],
        routed_by=route.rule.pk if route.rule else None,
        routed_by_version=case.routed_by_version,
        routing=route.explanation,
        summary=case.summary,
    )
    # An in-transaction subscriber (a rule) may have routed or resolved the case meanwhile.
    case.refresh_from_db()
    return case


def _add_occurrence(case: Case, fields: dict, *, actor: Actor, reason: str, now: dt.datetime) -> Case:
    case.occurrences += 1
    context = _merge_context(case.context, fields["context"])
    repeats = list(context.get("repeats") or [])[-19:]
    repeats.append({"at": now.isoformat(), "by": actor.label, "summary": fields["summary"], "reason": reason})
    context["repeats"] = repeats
    case.context = context
    case.materiality = max(case.materiality, fields["materiality"])
    if SEVERITY_RANK[fields["severity"]] > SEVERITY_RANK[case.severity]:
        case.severity = fields["severity"]
    stamp_history(case, actor=actor, reason=f"Again: {reason}")
    case.save(update_fields=["occurrences", "context", "materiality", "severity", "updated_at"])
    _publish(
        case,
        "case.repeated",
        actor=actor,
        reason=reason,
        now=now,
        changes=[(case.queue, QueueChange.Kind.UPDATED)],
        summary=fields["summary"],
    )
    return case


# --- working a case ------------------------------------------------------------------


def case_assign(*, case: Case | int, assignee, actor: Actor, reason: str = "Assigned", now: dt.datetime | None = None):
    """Give the case to a person who works its queue (an operations admin may reassign any case)."""
    now = now or timezone.now()
    _require_reason(reason)
    with transaction.atomic():
        case = _lock_case(case)
        _check_queue_role(actor, case.queue, admin_may=True)
        if assignee is None or not assignee.is_active:
            raise InvalidInput("Choose an active person to assign.", fields={"assignee": ["Required."]})
        if case.queue.role not in roles_of(assignee):
            raise InvalidInput(
                f"{_user_label(assignee)} does not work the {case.queue.name} queue.",
                fields={"assignee": [f"Choose someone with the {case.queue.name} role."]},
            )
        transition(
            case,
            "assign",
            actor=actor,
            reason=reason,
            update_fields=["assignee", "first_responded_at"],
            assignee=assignee,
            now=now,
        )
        _store_clock(case, now)
        _publish(
            case, "case.assigned", actor=actor, reason=reason, now=now, changes=[(case.queue, QueueChange.Kind.UPDATED)]
        )
    return case


def case_claim(*, case: Case | int, actor: Actor, now: dt.datetime | None = None):
    """The acting person takes the case."""
    if actor.kind != "user":
        raise InvalidInput("Only a person can claim a case.")
    return case_assign(case=case, assignee=actor.user, actor=actor, reason="Claimed", now=now)


def case_start(*, case: Case | int, actor: Actor, reason: str = "Started", now: dt.datetime | None = None):
    """Work on the case began (the person starting it takes it when nobody has)."""
    now = now or timezone.now()
    _require_reason(reason)
    with transaction.atomic():
        case = _lock_case(case)
        _check_queue_role(actor, case.queue)
        if actor.kind == "user" and case.assignee_id is None:
            case.assignee = actor.user
        transition(case, "start", actor=actor, reason=reason, update_fields=["assignee", "first_responded_at"], now=now)
        _store_clock(case, now)
        _publish(
            case, "case.started", actor=actor, reason=reason, now=now, changes=[(case.queue, QueueChange.Kind.UPDATED)]
        )
    return case


def case_wait_on_external(*, case: Case | int, actor: Actor, reason: str, now: dt.datetime | None = None):
    """The case waits on a customer, supplier or carrier; the SLA clock stops if the policy says so."""
    now = now or timezone.now()
    _require_reason(reason)
    with transaction.atomic():
        case = _lock_case(case)
        _check_queue_role(actor, case.queue)
        pause = bool(case.sla_policy and case.sla_policy.pause_while_waiting)
        transition(
            case, "wait_on_external", actor=actor, reason=reason, update_fields=["paused_at"], now=now, pause=pause
        )
        _store_clock(case, now)
        _publish(
            case,
            "case.waiting",
            actor=actor,
            reason=reason,
            now=now,
            changes=[(case.queue, QueueChange.Kind.UPDATED)],
            paused=pause,
        )
    return case


def case_resume(*, case: Case | int, actor: Actor, reason: str = "Resumed", now: dt.datetime | None = None):
    """The external party answered: back to work; the due times move by the time paused."""
    now = now or timezone.now()
    _require_reason(reason)
    with transaction.atomic():
        case = _lock_case(case)
        _check_queue_role(actor, case.queue)
        paused = now - case.paused_at if case.paused_at else dt.timedelta(0)
        if paused.total_seconds() < 0:
            paused = dt.timedelta(0)
        _shift_clock(case, paused)
        transition(
            case,
            "resume",
            actor=actor,
            reason=reason,
            update_fields=["paused_at", "paused_seconds", "resolution_due_at", "first_response_due_at"],
            now=now,
        )
        _store_clock(case, now)
        _publish(
            case,
            "case.resumed",
            actor=actor,
            reason=reason,
            now=now,
            changes=[(case.queue, QueueChange.Kind.UPDATED)],
            paused_seconds=int(paused.total_seconds()),
        )
    return case


def _move(case: Case, target: Queue) -> list[tuple[Queue, str]]:
    """Point the case at another queue; the assignee stays only if they work the new queue."""
    previous = case.queue
    case.queue = target
    if case.assignee_id and target.role not in roles_of(case.assignee):
        case.assignee = None
    return [(previous, QueueChange.Kind.REMOVED), (target, QueueChange.Kind.ADDED)]


def _queue_by_code(queue_code: str) -> Queue:
    queue = Queue.objects.filter(code=queue_code).first()
    if queue is None:
        raise InvalidInput(f"There is no queue {queue_code!r}.", fields={"queue_code": ["Choose an existing queue."]})
    return queue


def case_route_to(
    *, case: Case | int, queue_code: str, actor: Actor, reason: str, now: dt.datetime | None = None
) -> Case:
    """Move the case to another role's queue (it disappears from one and appears in the other)."""
    _require_reason(reason)
    now = now or timezone.now()
    with transaction.atomic():
        case = _lock_case(case)
        _check_queue_role(actor, case.queue, admin_may=True)
        _require_active(case, "routed")
        target = _queue_by_code(queue_code)
        if target.pk == case.queue_id:
            raise TransitionRefused(f"Case {case.pk} is already in the {target.name} queue.")
        previous = case.queue
        changes = _move(case, target)
        stamp_history(case, actor=actor, reason=reason)
        case.save(update_fields=["queue", "assignee", "updated_at"])
        _publish(
            case,
            "case.routed",
            actor=actor,
            reason=reason,
            now=now,
            changes=changes,
            previous_queue=previous.code,
        )
    return case


def case_escalate(
    *, case: Case | int, actor: Actor, reason: str, queue_code: str = "", now: dt.datetime | None = None
) -> Case:
    """Escalate by hand: priority up one, optionally to another queue."""
    now = now or timezone.now()
    _require_reason(reason)
    with transaction.atomic():
        case = _lock_case(case)
        _check_queue_role(actor, case.queue)
        previous = case.queue
        changes = [(case.queue, QueueChange.Kind.UPDATED)]
        if queue_code and queue_code != case.queue.code:
            changes = _move(case, _queue_by_code(queue_code))
        case.priority = min(4, case.priority + 1)
        transition(
            case,
            "escalate",
            actor=actor,
            reason=reason,
            update_fields=["escalation_level", "priority", "queue", "assignee"],
        )
        extra = {"previous_queue": previous.code} if previous.pk != case.queue_id else {}
        _publish(case, "case.escalated", actor=actor, reason=reason, now=now, changes=changes, **extra)
    return case


def case_cancel(*, case: Case | int, actor: Actor, reason: str, now: dt.datetime | None = None) -> Case:
    """Close the case without a domain action (raised in error, duplicate of another case)."""
    now = now or timezone.now()
    _require_reason(reason)
    with transaction.atomic():
        case = _lock_case(case)
        _check_queue_role(actor, case.queue)
        transition(
            case,
            "cancel",
            actor=actor,
            reason=reason,
            update_fields=["resolution_note", "resolved_by", "resolved_at", "paused_at"],
            note=reason,
            actor_label=actor.label,
            now=now,
        )
        _publish(
            case,
            "case.cancelled",
            actor=actor,
            reason=reason,
            now=now,
            changes=[(case.queue, QueueChange.Kind.REMOVED)],
        )
    return case


def case_comment(*, case: Case | int, actor: Actor, body: str) -> CaseComment:
    """A person adds a note to the case's timeline."""
    if actor.kind != "user":
        raise InvalidInput("Comments are written by people.")
    body = (body or "").strip()
    if not body:
        raise InvalidInput("Write something to comment.", fields={"body": ["Required."]})
    if len(body) > MAX_COMMENT:
        raise InvalidInput(
            f"Comments are at most {MAX_COMMENT} characters.", fields={"body": [f"At most {MAX_COMMENT} characters."]}
        )
    now = timezone.now()
    with transaction.atomic():
        case = _lock_case(case)
        _check_queue_role(actor, case.queue, admin_may=True)
        comment = CaseComment.objects.create(case=case, author=actor.user, body=body)
        _publish(case, "case.commented", actor=actor, reason=body[:200], now=now, comment_id=comment.pk)
    return comment


# --- resolving -----------------------------------------------------------------------


def _check_resolution_allowed(case: Case, resolution: str, actor: Actor) -> None:
    from exceptions import resolutions

    if resolution not in case.type.allowed_resolutions:
        raise InvalidInput(
            f"“{resolution}” is not a resolution of {case.type.name.lower()} cases.",
            fields={"resolution": [f"One of {', '.join(case.type.allowed_resolutions) or 'none'}."]},
        )
    if actor.kind != "user":
        return
    _check_queue_role(actor, case.queue)
    allowed_roles = case.type.roles_for(resolution)
    if not allowed_roles & set(roles_of(actor.user)):
        label = resolutions.label_for(case.type, resolution)
        raise PermissionRefused(f"“{label}” is not open to your roles on {case.type.name.lower()} cases.")
    if actor.label in resolutions.requesters_of(case, resolution):
        raise PermissionRefused(
            "You raised or recorded what this approves; another person must approve it.", code="own_request"
        )


def case_resolve(
    *,
    case: Case | int,
    resolution: str,
    actor: Actor,
    reason: str,
    params: dict | None = None,
    now: dt.datetime | None = None,
) -> Case:
    """Resolve the case by running its resolution's domain action, in the same transaction as the transition."""
    from exceptions.resolutions import RESOLUTIONS

    now = now or timezone.now()
    _require_reason(reason)
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise InvalidInput("Resolution parameters must be an object.", fields={"params": ["Must be an object."]})
    definition = RESOLUTIONS.get(resolution)
    if definition is None:
        raise InvalidInput(f"Unknown resolution “{resolution}”.", fields={"resolution": ["Unknown resolution."]})
    with transaction.atomic():
        _lock_cause(case)
        case = _lock_case(case)
        _require_active(case, "resolved")
        _check_resolution_allowed(case, resolution, actor)
        token = _resolving.set(_resolving.get() | {case.pk})
        try:
            outcome = definition.handler(case=case, actor=actor, reason=reason, params=params)
        finally:
            _resolving.reset(token)
        transition(
            case,
            "resolve",
            actor=actor,
            reason=reason,
            update_fields=[
                "resolution_code",
                "resolution_note",
                "resolved_by",
                "resolved_at",
                "paused_at",
            ],
            resolution=resolution,
            note=outcome or "",
            actor_label=actor.label,
            now=now,
        )
        _publish(
            case,
            "case.resolved",
            actor=actor,
            reason=reason,
            now=now,
            changes=[(case.queue, QueueChange.Kind.REMOVED)],
            resolution=resolution,
            outcome=outcome or "",
        )
    return case


def case_auto_resolve(
    *, type_code: str, subject_type: str, subject_id: str, actor: Actor, reason: str, now: dt.datetime | None = None
) -> Case | None:
    """The cause disappeared (stock arrived, hold released elsewhere): close the active case for it, if any."""
    now = now or timezone.now()
    with transaction.atomic():
        case = (
            Case.objects.active()
            .filter(type__code=type_code, subject_type=subject_type, subject_id=str(subject_id))
            .select_for_update(of=("self",))
            .select_related("type", "queue", "warehouse", "assignee", "sla_policy")
            .first()
        )
        if case is None or case.pk in _resolving.get():
            return None
        _auto_resolve(case, actor=actor, reason=reason, now=now)
    return case


def cases_auto_resolve_for_order(
    *, order_number: str, type_codes: list[str], actor: Actor, reason: str, now: dt.datetime | None = None
) -> list[int]:
    """Close every active case of these types about one order (its lines, tasks or itself); returns their ids."""
    now = now or timezone.now()
    if not order_number:
        return []
    closed = []
    with transaction.atomic():
        cases = (
            Case.objects.active()
            .filter(order_number=order_number, type__code__in=type_codes)
            .select_for_update(of=("self",))
            .select_related("type", "queue", "warehouse", "assignee", "sla_policy")
            .order_by("pk")
        )
        for case in cases:
            if case.pk in _resolving.get():
                continue
            _auto_resolve(case, actor=actor, reason=reason, now=now)
            closed.append(case.pk)
    return closed


def _auto_resolve(case: Case, *, actor: Actor, reason: str, now: dt.datetime) -> None:
    transition(
        case,
        "auto_resolve",
        actor=actor,
        reason=reason,
        update_fields=[
            "resolution_code",
            "resolution_note",
            "resolved_by",
            "resolved_at",
            "paused_at",
        ],
        note=reason,
        actor_label=actor.label,
        now=now,
    )
    _publish(
        case,
        "case.auto_resolved",
        actor=actor,
        reason=reason,
        now=now,
        changes=[(case.queue, QueueChange.Kind.REMOVED)],
        resolution="cause_cleared",
    )


# --- bulk ------------------------------------------------------------------------------


def _bulk(case_ids, action) -> dict:
    """Run `action(case_id)` per case, each in its own transaction and with its own checks."""
    try:
        ids = sorted({int(case_id) for case_id in case_ids})
    except (TypeError, ValueError):
        raise InvalidInput("Case ids must be numbers.", fields={"case_ids": ["Numbers only."]}) from None
    if not ids:
        raise InvalidInput("Select at least one case.", fields={"case_ids": ["Select at least one case."]})
    if len(ids) > MAX_BULK:
        raise InvalidInput(f"At most {MAX_BULK} cases at once.", fields={"case_ids": [f"At most {MAX_BULK}."]})
    done: list[int] = []
    refused: dict[int, str] = {}
    for case_id in ids:
        try:
            with transaction.atomic():
                action(case_id)
            done.append(case_id)
        except DomainError as error:
            refused[case_id] = error.message
    return {"done": done, "refused": refused}


def cases_bulk_assign(*, case_ids, assignee, actor: Actor, reason: str = "Assigned") -> dict:
    """Assign several cases; each is checked on its own. Returns {"done": [ids], "refused": {id: message}}."""
    _require_reason(reason)
    return _bulk(case_ids, lambda case_id: case_assign(case=case_id, assignee=assignee, actor=actor, reason=reason))


def cases_bulk_resolve(*, case_ids, resolution: str, actor: Actor, reason: str, params: dict | None = None) -> dict:
    """Resolve several cases the same way; each is checked and run on its own."""
    _require_reason(reason)
    return _bulk(
        case_ids,
        lambda case_id: case_resolve(case=case_id, resolution=resolution, actor=actor, reason=reason, params=params),
    )


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
    reason = f"SLA escalation step {step.position} ({case.sla_policy.name}): after {step.after_minutes} min"
    previous = case.queue
    changes = [(case.queue, QueueChange.Kind.UPDATED)]
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
