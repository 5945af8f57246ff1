"""Raising, working, resolving and closing cases."""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.utils import timezone

from exceptions.models import (
    SEVERITY_RANK,
    Case,
    CaseComment,
    ExceptionType,
    Queue,
    QueueChange,
    Severity,
)
from exceptions.services.common import (
    MAX_BULK,
    MAX_COMMENT,
    _check_queue_role,
    _lock_case,
    _lock_cause,
    _move,
    _publish,
    _queue_by_code,
    _require_active,
    _resolving,
    _user_label,
)
from exceptions.services.routing import routing_match
from exceptions.services.sla import _next_escalation_at, _shift_clock, _sla_timer_at, _start_clock, _store_clock
from portal.actors import Actor, stamp_history
from portal.domain import (
    DomainError,
    InvalidInput,
    NotFound,
    PermissionRefused,
    TransitionRefused,
    require_reason,
    transition,
)
from portal.roles import roles_of

logger = logging.getLogger(__name__)


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
                    .select_for_update(of=("self",), no_key=True)
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
    require_reason(reason)
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
    require_reason(reason)
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
    require_reason(reason)
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
    require_reason(reason)
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


def case_route_to(
    *, case: Case | int, queue_code: str, actor: Actor, reason: str, now: dt.datetime | None = None
) -> Case:
    """Move the case to another role's queue (it disappears from one and appears in the other)."""
    require_reason(reason)
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
    require_reason(reason)
    with transaction.atomic():
        case = _lock_case(case)
        _check_queue_role(actor, case.queue)
        previous = case.queue
        changes: list[tuple[Queue, str]] = [(case.queue, QueueChange.Kind.UPDATED)]
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
    require_reason(reason)
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


# What a resolution (by a person or automatic) writes on the case besides its status.
RESOLUTION_FIELDS = ("resolution_code", "resolution_note", "resolved_by", "resolved_at", "paused_at")


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
    require_reason(reason)
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
            update_fields=RESOLUTION_FIELDS,
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
            .select_for_update(of=("self",), no_key=True)
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
            .select_for_update(of=("self",), no_key=True)
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
        update_fields=RESOLUTION_FIELDS,
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
    require_reason(reason)
    return _bulk(case_ids, lambda case_id: case_assign(case=case_id, assignee=assignee, actor=actor, reason=reason))


def cases_bulk_resolve(*, case_ids, resolution: str, actor: Actor, reason: str, params: dict | None = None) -> dict:
    """Resolve several cases the same way; each is checked and run on its own."""
    require_reason(reason)
    return _bulk(
        case_ids,
        lambda case_id: case_resolve(case=case_id, resolution=resolution, actor=actor, reason=reason, params=params),
    )
