"""Helpers every exceptions service shares: locking, the queue sequence, publishing, role checks."""

from __future__ import annotations

import datetime as dt
from contextvars import ContextVar

from django.apps import apps
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Greatest

from exceptions.models import (
    Case,
    Queue,
    QueueChange,
)
from portal.actors import Actor
from portal.domain import InvalidInput, NotFound, PermissionRefused, TransitionRefused
from portal.events import emit
from portal.live import broadcast, role_group
from portal.roles import Role, roles_of

SLA_TIMER = Actor.system("sla-timer")
MAX_BULK = 500
MAX_COMMENT = 5000
# Causes whose rows are locked before the case (the lock order in the package docstring), by subject type.
CAUSE_SUBJECTS = {"orchestration.order", "inventory.receipt", "inventory.cyclecount"}

# Cases whose resolution is running in this context: the cause disappearing as a result of the
# resolution (credit released, order cancelled, message replayed) must not auto-resolve them first.
_resolving: ContextVar[frozenset[int]] = ContextVar("exceptions_resolving", default=frozenset())


# --- helpers -------------------------------------------------------------------------


def _case_id(case: Case | int | str) -> int:
    """The case's id, from the case, its id, or its id as a URL or a form gives it."""
    if isinstance(case, Case):
        return case.pk
    try:
        return int(str(case))
    except (TypeError, ValueError):
        raise NotFound(f"No case {case!r}.") from None


def _lock_case(case: Case | int) -> Case:
    try:
        return (
            Case.objects.select_for_update(of=("self",), no_key=True)
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
        order_model.objects.select_for_update(of=("self",), no_key=True).filter(number=row["order_number"]).first()
    elif row["subject_type"] in CAUSE_SUBJECTS and row["subject_id"].isdigit():
        model = apps.get_model(*row["subject_type"].split("."))
        model.objects.select_for_update(of=("self",), no_key=True).filter(pk=int(row["subject_id"])).first()


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
        "warehouse": case.warehouse.code if case.warehouse else "",
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
    updates: dict[str, object] = {"last_seq": Greatest(F("last_seq"), event.pk)}
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
