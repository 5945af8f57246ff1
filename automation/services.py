"""Every change the automation app makes: equipment, machine hand-offs, WCS events, recommendations, risk.

Each public function is one business action: keyword-only, takes the actor and a reason
(heartbeats and sweeps name themselves), runs in one transaction and publishes its events
through the outbox. Time is always passed in (``now=``) so timers are testable.

Lock order (never reversed): equipment → order → task → hand-off. Dispatch does not lock the
equipment row; a unit that stops between the choice and the commit is caught by the
reconcile sweep, which re-routes hand-offs held by units that cannot take work.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from automation import events
from automation.models import Equipment, EquipmentFault, HandOff, Recommendation, RiskPolicy, Rule
from inventory.models import Warehouse
from orchestration import services as orchestration
from orchestration.models import Order, Task
from portal.actors import Actor, stamp_history
from portal.domain import DomainError, InvalidInput, NotFound, TransitionRefused, require_reason
from portal.events import emit

logger = logging.getLogger(__name__)

DISPATCHER = Actor.system("wcs-dispatcher")
HEARTBEAT_MONITOR = Actor.system("heartbeat-monitor")
AUTOMATION_FAULT = "automation_fault"
MACHINE = Task.Performer.MACHINE
HANDED_STATES = [Task.Status.DISPATCHED, Task.Status.ACKNOWLEDGED]  # instruction sent, work not begun
MACHINE_OPEN_STATES = [Task.Status.DISPATCHED, Task.Status.ACKNOWLEDGED, Task.Status.IN_PROGRESS]


# --- ports to the exceptions and integrations apps -----------------------------------------


def _send_to_wcs(*, message_type: str, payload: dict, task: Task, order_number: str, actor: Actor):
    """Write the WCS message into the outbox in the caller's transaction (integrations delivers it)."""
    try:
        from integrations.outbound import message_send
    except ImportError:  # the integrations outbox is not installed here: the ack timeout covers the gap
        logger.warning("no integrations outbox; WCS message not written", extra={"task_id": task.pk})
        return None
    return message_send(
        partner_kind="wcs",
        message_type=message_type,
        payload=payload,
        ordering_key=f"wcs:task:{task.pk}",
        order_number=order_number,
        actor=actor,
    )


def _raise_case(**kwargs):
    """Raise (or add an occurrence to) an exception case through the exceptions app's service."""
    try:
        from exceptions.services import case_raise
    except ImportError:
        logger.warning("no exceptions app; case not raised", extra={"type_code": kwargs.get("type_code")})
        return None
    return case_raise(**kwargs)


def _auto_resolve_case(*, equipment: Equipment, actor: Actor, reason: str):
    try:
        from exceptions.services import case_auto_resolve
    except ImportError:
        return None

    return case_auto_resolve(
        type_code=AUTOMATION_FAULT,
        subject_type=equipment._meta.label_lower,
        subject_id=str(equipment.pk),
        actor=actor,
        reason=reason,
    )


# --- equipment registry --------------------------------------------------------------------


def _equipment_payload(equipment: Equipment, **extra) -> dict:
    return {
        "equipment": equipment.code,
        "equipment_id": equipment.pk,
        "equipment_kind": equipment.kind,
        "warehouse": equipment.warehouse.code,
        "warehouse_id": equipment.warehouse_id,
        "zone": equipment.zone,
        "status": equipment.status,
        **extra,
    }


def _lock_equipment(equipment: Equipment | int | str) -> Equipment:
    query = Equipment.objects.select_for_update(of=("self",), no_key=True).select_related("warehouse")
    try:
        if isinstance(equipment, Equipment):
            return query.get(pk=equipment.pk)
        if isinstance(equipment, int):
            return query.get(pk=equipment)
        return query.get(code=equipment)
    except Equipment.DoesNotExist as missing:
        raise NotFound(f"No equipment {equipment}.") from missing


def equipment_register(
    *,
    code: str,
    name: str,
    kind: str,
    warehouse: Warehouse,
    zone: str,
    capabilities: dict,
    actor: Actor,
    reason: str = "Registered",
    **settings,
) -> Equipment:
    """Add a unit to the registry (or update the one with that code), validated like the admin form."""
    from django.core.exceptions import ValidationError

    with transaction.atomic():
        equipment = Equipment.objects.select_for_update(no_key=True).filter(code=code).first() or Equipment(code=code)
        created = equipment.pk is None
        equipment.name, equipment.kind, equipment.warehouse, equipment.zone = name, kind, warehouse, zone
        equipment.capabilities = capabilities
        for key, value in settings.items():
            setattr(equipment, key, value)
        try:
            equipment.full_clean()
        except ValidationError as error:
            raise InvalidInput(
                "The equipment has invalid values; nothing was saved.", fields=error.message_dict
            ) from error
        stamp_history(equipment, actor=actor, reason=reason)
        equipment.save()
        if created:
            emit(
                events.EQUIPMENT_REGISTERED,
                subject=equipment,
                actor=actor,
                reason=reason,
                payload=_equipment_payload(equipment),
            )
    return equipment


def _set_status(equipment: Equipment, status: str, *, now: dt.datetime, actor: Actor, reason: str) -> str:
    """Change a locked unit's status with a history row and an event; returns the previous status."""
    previous = equipment.status
    equipment.status = status
    equipment.status_reason = reason
    equipment.status_changed_at = now
    stamp_history(equipment, actor=actor, reason=reason)
    equipment.save(update_fields=["status", "status_reason", "status_changed_at", "updated_at"])
    emit(
        events.EQUIPMENT_STATUS_CHANGED,
        subject=equipment,
        actor=actor,
        reason=reason,
        payload=_equipment_payload(equipment, previous=previous, reason=reason),
    )
    return previous


def equipment_heartbeat(
    *, equipment: Equipment | str, status: str = Equipment.Status.ONLINE, now: dt.datetime, actor: Actor
) -> Equipment:
    """A unit reported in. Recorded without a history row; a status it reports that differs is applied, except
    that a unit a person took out of service stays out until a person brings it back."""
    if status not in Equipment.Status.values:
        raise InvalidInput(
            f"Unknown equipment status {status!r}.",
            fields={"status": [f"Choose from {', '.join(Equipment.Status.values)}."]},
        )
    with transaction.atomic():
        equipment = _lock_equipment(equipment)
        if equipment.last_heartbeat_at and now < equipment.last_heartbeat_at:
            return equipment  # an older heartbeat arriving late says nothing new
        # Heartbeats arrive every few seconds per unit: a column update, not a history row each.
        Equipment.objects.filter(pk=equipment.pk).update(last_heartbeat_at=now)
        equipment.last_heartbeat_at = now
        if status == equipment.status:
            return equipment
        if status in Equipment.DISPATCHABLE and _taken_out_by_a_person(equipment):
            return equipment  # it reports in, and stays out of service until a person brings it back
        reason = f"{equipment.code} reports {status}"
        if status == Equipment.Status.FAULTED:
            _stop(
                equipment, kind=EquipmentFault.Kind.FAULT, code="", message=reason, now=now, actor=actor, reason=reason
            )
        elif status == Equipment.Status.OFFLINE:
            _stop(
                equipment,
                kind=EquipmentFault.Kind.OFFLINE,
                code="reported",
                message=reason,
                now=now,
                actor=actor,
                reason=reason,
            )
        elif status == Equipment.Status.MAINTENANCE:
            _to_maintenance(equipment, now=now, actor=actor, reason=reason)
        elif equipment.status in (Equipment.Status.OFFLINE, Equipment.Status.FAULTED, Equipment.Status.MAINTENANCE):
            _restore(
                equipment,
                status=status,
                now=now,
                actor=actor,
                reason=f"{equipment.code} is back ({status}) after being {equipment.status}",
            )
        else:
            _set_status(equipment, status, now=now, actor=actor, reason=reason)
    return equipment


def equipment_set_status(
    *, equipment: Equipment | str, status: str, now: dt.datetime, actor: Actor, reason: str
) -> Equipment:
    """A person (or the WCS) sets a unit's status: maintenance and stops re-route its work; online restores it."""
    require_reason(reason)
    if status not in Equipment.Status.values:
        raise InvalidInput(
            f"Unknown equipment status {status!r}.",
            fields={"status": [f"Choose from {', '.join(Equipment.Status.values)}."]},
        )
    with transaction.atomic():
        equipment = _lock_equipment(equipment)
        if status == equipment.status:
            return equipment
        if status == Equipment.Status.MAINTENANCE:
            _to_maintenance(equipment, now=now, actor=actor, reason=reason)
        elif status == Equipment.Status.FAULTED:
            _stop(
                equipment,
                kind=EquipmentFault.Kind.FAULT,
                code="manual",
                message=reason,
                now=now,
                actor=actor,
                reason=reason,
            )
        elif status == Equipment.Status.OFFLINE:
            _stop(
                equipment,
                kind=EquipmentFault.Kind.OFFLINE,
                code="manual",
                message=reason,
                now=now,
                actor=actor,
                reason=reason,
            )
        elif equipment.status in (Equipment.Status.OFFLINE, Equipment.Status.FAULTED, Equipment.Status.MAINTENANCE):
            _restore(equipment, status=status, now=now, actor=actor, reason=reason)
        else:
            _set_status(equipment, status, now=now, actor=actor, reason=reason)
    return equipment


def equipment_fault(
    *,
    equipment: Equipment | str,
    kind: str = EquipmentFault.Kind.FAULT,
    code: str = "",
    message: str = "",
    now: dt.datetime,
    actor: Actor,
    reason: str = "",
) -> EquipmentFault:
    """The WCS reports a jam or fault: the unit stops, its waiting work is re-routed and a case is raised."""
    if kind not in (EquipmentFault.Kind.JAM, EquipmentFault.Kind.FAULT):
        raise InvalidInput(f"Unknown fault kind {kind!r}.", fields={"kind": ["Choose jam or fault."]})
    with transaction.atomic():
        equipment = _lock_equipment(equipment)
        reason = reason or f"{equipment.code}: {kind}{f' {code}' if code else ''}{f' — {message}' if message else ''}"
        return _stop(equipment, kind=kind, code=code, message=message, now=now, actor=actor, reason=reason)


def equipment_clear(
    *, equipment: Equipment | str, now: dt.datetime, actor: Actor, reason: str = "Fault cleared"
) -> Equipment:
    """The WCS reports the unit cleared: back online, held tasks resume, its case resolves once work is re-placed."""
    with transaction.atomic():
        equipment = _lock_equipment(equipment)
        if equipment.status in Equipment.DISPATCHABLE and not equipment.faults.filter(cleared_at__isnull=True).exists():
            return equipment
        Equipment.objects.filter(pk=equipment.pk).update(last_heartbeat_at=now)
        equipment.last_heartbeat_at = now
        if _taken_out_by_a_person(equipment):
            return equipment
        _restore(equipment, status=Equipment.Status.ONLINE, now=now, actor=actor, reason=reason)
    return equipment


def _taken_out_by_a_person(equipment: Equipment) -> bool:
    """Whether a person put the unit in its current stopped state (maintenance, or a stop they recorded).

    Such a unit stays out of service until a person brings it back: the WCS reporting it online
    meanwhile (its heartbeats go on during a battery swap or a belt check) does not dispatch work
    to it. A stop the WCS itself reported, or a lost heartbeat, is lifted by the WCS as before.
    """
    if equipment.status in Equipment.DISPATCHABLE:
        return False
    changed_by = (
        equipment.history.filter(status=equipment.status, status_changed_at=equipment.status_changed_at)
        .order_by("history_id")
        .values_list("history_actor", flat=True)
        .first()
    )
    return bool(changed_by and changed_by.startswith("user:"))


def equipments_check_heartbeats(*, now: dt.datetime, actor: Actor = HEARTBEAT_MONITOR) -> int:
    """Mark offline every monitored unit silent for longer than its timeout; returns how many went offline."""
    stopped = 0
    for equipment_id in list(Equipment.objects.heartbeat_overdue(now).values_list("pk", flat=True)):
        with transaction.atomic():
            equipment = _lock_equipment(equipment_id)
            last_seen = equipment.last_heartbeat_at or equipment.status_changed_at
            if equipment.status not in Equipment.MONITORED or not equipment.is_active:
                continue
            silent = (now - last_seen).total_seconds()
            if silent <= equipment.heartbeat_timeout_seconds:
                continue  # it reported in meanwhile
            reason = (
                f"No heartbeat from {equipment.code} for {int(silent)} s "
                f"(timeout {equipment.heartbeat_timeout_seconds} s)"
            )
            _stop(
                equipment,
                kind=EquipmentFault.Kind.OFFLINE,
                code="heartbeat_lost",
                message=reason,
                now=now,
                actor=actor,
                reason=reason,
            )
            stopped += 1
    return stopped


def _to_maintenance(equipment: Equipment, *, now: dt.datetime, actor: Actor, reason: str) -> None:
    _set_status(equipment, Equipment.Status.MAINTENANCE, now=now, actor=actor, reason=reason)
    _reroute_open_handoffs(equipment, now=now, actor=actor, reason=f"{equipment.code} in maintenance: {reason}")


def _tasks_affected(count: int) -> str:
    return "no task affected" if count == 0 else f"{count} task{'s' if count != 1 else ''} affected"


def _stop(
    equipment: Equipment, *, kind: str, code: str, message: str, now: dt.datetime, actor: Actor, reason: str
) -> EquipmentFault:
    """A locked unit stopped: record the fault, re-route its waiting work, raise the automation-fault case."""
    open_fault = equipment.faults.filter(cleared_at__isnull=True, kind=kind).first()
    status = Equipment.Status.OFFLINE if kind == EquipmentFault.Kind.OFFLINE else Equipment.Status.FAULTED
    if open_fault is not None and equipment.status == status:
        return open_fault  # the same stoppage reported again
    if equipment.status != status:
        _set_status(equipment, status, now=now, actor=actor, reason=reason)
    affected = _reroute_open_handoffs(equipment, now=now, actor=actor, reason=reason)
    orders = sorted({entry["order"] for entry in affected if entry["order"]})
    fault = EquipmentFault.objects.create(
        equipment=equipment,
        kind=kind,
        code=code,
        message=message,
        opened_at=now,
        affected_tasks=affected,
        order_numbers=orders,
        opened_by=actor.label,
    )
    event_name = events.EQUIPMENT_OFFLINE if kind == EquipmentFault.Kind.OFFLINE else events.EQUIPMENT_FAULTED
    event = emit(
        event_name,
        subject=equipment,
        actor=actor,
        reason=reason,
        payload=_equipment_payload(
            equipment,
            fault=kind,
            fault_code=code,
            fault_id=fault.pk,
            message=message,
            affected_tasks=len(affected),
            affected_orders=len(orders),
            tasks=affected,
            orders=orders,
        ),
    )
    case = _raise_case(
        type_code=AUTOMATION_FAULT,
        subject=equipment,
        subject_label=f"{equipment.name} ({equipment.code})",
        summary=f"{equipment.get_kind_display()} {equipment.code} in zone {equipment.zone} at "
        f"{equipment.warehouse.code}: {fault.get_kind_display().lower()}"
        f"{f' {code}' if code and code not in ('manual', 'reported') else ''}; {_tasks_affected(len(affected))}",
        context={
            "equipment": equipment.code,
            "equipment_kind": equipment.kind,
            "zone": equipment.zone,
            "warehouse": equipment.warehouse.code,
            "fault": kind,
            "fault_code": code,
            "message": message,
            "fault_id": fault.pk,
            "opened_at": now.isoformat(),
            "affected_tasks": affected,
            "orders": orders,
        },
        actor=actor,
        reason=reason,
        warehouse=equipment.warehouse,
        materiality=Decimal(len(orders)),
        order_number=orders[0] if len(orders) == 1 else "",
        source_event_id=event.pk,
    )
    fault.case_id = getattr(case, "pk", None)
    fault.save(update_fields=["case_id"])
    return fault


def _restore(equipment: Equipment, *, status: str, now: dt.datetime, actor: Actor, reason: str) -> None:
    """A locked unit is back: close its faults, resolve its case once its work is re-placed, take new work."""
    if equipment.status != status:
        _set_status(equipment, status, now=now, actor=actor, reason=reason)
    closed = list(equipment.faults.filter(cleared_at__isnull=True))
    EquipmentFault.objects.filter(pk__in=[f.pk for f in closed]).update(cleared_at=now, cleared_by=actor.label)
    # Work is re-placed when nothing it held at the stop still waits on a unit that cannot take it.
    stranded = _stranded_task_ids(closed)
    for task_id in stranded:
        _replace_task(task_id, exclude=(), now=now, actor=actor, reason=f"{equipment.code} back; re-placing")
    emit(
        events.EQUIPMENT_CLEARED,
        subject=equipment,
        actor=actor,
        reason=reason,
        payload=_equipment_payload(equipment, faults_closed=[f.pk for f in closed]),
    )
    if closed:
        _auto_resolve_case(
            equipment=equipment,
            actor=actor,
            reason=f"{equipment.code} is {status} again and its work is re-placed: {reason}",
        )
    transaction.on_commit(lambda: _queue_pending_dispatch(equipment.warehouse_id))


def _stranded_task_ids(faults: list[EquipmentFault]) -> list[int]:
    task_ids = {entry["task_id"] for fault in faults for entry in fault.affected_tasks}
    if not task_ids:
        return []
    rows = Task.objects.filter(pk__in=task_ids, status__in=HANDED_STATES, performer=MACHINE).values_list(
        "pk", "equipment_code"
    )
    codes = {code for _, code in rows}
    dispatchable = set(Equipment.objects.filter(code__in=codes).dispatchable().values_list("code", flat=True))
    return sorted(pk for pk, code in rows if code not in dispatchable)


def _queue_pending_dispatch(warehouse_id: int) -> None:
    from automation.tasks import dispatch_pending

    try:
        dispatch_pending.apply_async(kwargs={"warehouse_id": warehouse_id}, queue=settings.EVENTS_QUEUE)
    except Exception:
        logger.warning("pending dispatch not queued; the beat sweep will pick the tasks up")


# --- hand-offs -----------------------------------------------------------------------------


def _lock_task(task_id: int) -> Task:
    """Lock the task's order, then the task (the core's fixed lock order)."""
    order_id = Task.objects.values_list("order_id", flat=True).get(pk=task_id)
    if order_id:
        Order.objects.select_for_update(no_key=True).filter(pk=order_id).first()
    return (
        Task.objects.select_for_update(of=("self",), no_key=True)
        .select_related("order", "location", "to_location", "item")
        .get(pk=task_id)
    )


def candidates_for(task: Task, *, exclude: tuple[int, ...] = ()) -> list[Equipment]:
    """Units that may take the task now, best first: online before degraded, then least loaded."""
    rows = (
        Equipment.objects.serving(warehouse_id=task.warehouse_id, kind=task.kind, zone=task.zone)
        .dispatchable()
        .exclude(pk__in=exclude)
        .select_related("warehouse")
        .annotate(in_flight=Count("handoffs", filter=Q(handoffs__status__in=HandOff.OPEN)))
    )
    usable = [unit for unit in rows if unit.in_flight < unit.max_tasks_in_flight]
    return sorted(
        usable,
        key=lambda unit: (unit.status != Equipment.Status.ONLINE, unit.in_flight, unit.code),  # type: ignore[attr-defined]
    )


def _instruction_payload(task: Task, equipment: Equipment, ack_deadline: dt.datetime) -> dict:
    return {
        "instruction": "task.assign",
        "task_id": task.pk,
        "order_id": task.order_id,
        "order_number": task.order.number if task.order else "",
        "instruction_seq": task.instruction_seq,
        "equipment": equipment.code,
        "kind": task.kind,
        "warehouse": equipment.warehouse.code,
        "zone": task.zone,
        "location": task.location.code if task.location else "",
        "to_location": task.to_location.code if task.to_location else "",
        "sku": task.item.sku if task.item else "",
        "quantity": task.quantity,
        "priority": task.priority,
        "ack_deadline": ack_deadline.isoformat(),
    }


def _send_instruction(task: Task, equipment: Equipment, *, now: dt.datetime, actor: Actor, reason: str) -> HandOff:
    """Dispatch a locked task to a unit as a lease, with the WCS message, in the caller's transaction."""
    ack_deadline = now + dt.timedelta(seconds=equipment.ack_timeout_seconds)
    dispatched = orchestration.task_dispatch(
        task=task,
        performer=MACHINE,
        equipment_code=equipment.code,
        ack_deadline=ack_deadline,
        actor=actor,
        reason=reason,
    )
    # Keep the caller's instance (it carries the order, location and item) in step with the dispatch.
    task.instruction_seq, task.dispatch_attempts = dispatched.instruction_seq, dispatched.dispatch_attempts
    task.ack_deadline, task.equipment_code = dispatched.ack_deadline, dispatched.equipment_code
    task.performer = dispatched.performer
    order_number = task.order.number if task.order else ""
    message = _send_to_wcs(
        message_type=events.WCS_WORK_INSTRUCTION,
        task=task,
        order_number=order_number,
        payload=_instruction_payload(task, equipment, ack_deadline),
        actor=actor,
    )
    handoff = HandOff.objects.create(
        task=task,
        equipment=equipment,
        instruction_seq=task.instruction_seq,
        attempt=task.dispatch_attempts,
        sent_at=now,
        ack_deadline=ack_deadline,
        note=reason,
        message_id=getattr(message, "pk", None),
        order_number=order_number,
    )
    emit(
        events.HANDOFF_SENT,
        subject=task,
        actor=actor,
        reason=reason,
        payload={
            "task_id": task.pk,
            "order": order_number,
            "order_id": task.order_id,
            "equipment": equipment.code,
            "instruction_seq": task.instruction_seq,
            "attempt": task.dispatch_attempts,
            "ack_deadline": ack_deadline.isoformat(),
            "handoff_id": handoff.pk,
            "zone": task.zone,
            "warehouse_id": task.warehouse_id,
        },
    )
    return handoff


def _cancel_instruction(task: Task, *, equipment_code: str, instruction_seq: int, actor: Actor, reason: str) -> None:
    """Tell the WCS to drop an instruction it may still hold (it moved elsewhere or became manual)."""
    _send_to_wcs(
        message_type=events.WCS_INSTRUCTION_CANCEL,
        task=task,
        order_number=task.order.number if task.order else "",
        actor=actor,
        payload={
            "instruction": "task.cancel",
            "task_id": task.pk,
            "equipment": equipment_code,
            "instruction_seq": instruction_seq,
            "reason": reason,
        },
    )


def task_handoff(
    *, task: Task | int, now: dt.datetime, actor: Actor = DISPATCHER, reason: str = "Handed to the WCS"
) -> HandOff | None:
    """Hand a new task to the best capable unit; None when no unit can take it (it stays for people)."""
    task_id = task if isinstance(task, int) else task.pk
    with transaction.atomic():
        task = _lock_task(task_id)
        # Only work nobody has touched: a person's dispatch, or a fallback to manual, is never taken back.
        if task.status != Task.Status.CREATED or task.instruction_seq != 0 or task.performer != Task.Performer.PERSON:
            return None
        units = candidates_for(task)
        if not units:
            return None
        unit = units[0]
        return _send_instruction(
            task,
            unit,
            now=now,
            actor=actor,
            reason=f"{reason}: {unit.code} ({unit.get_kind_display()}) in zone {task.zone}",
        )


def handoffs_dispatch_pending(
    *, now: dt.datetime, actor: Actor = DISPATCHER, warehouse_id: int | None = None, limit: int = 200
) -> int:
    """Hand untouched tasks in zones a unit now serves to the WCS (after a unit returns; a periodic catch-up)."""
    units = Equipment.objects.dispatchable()
    if warehouse_id:
        units = units.filter(warehouse_id=warehouse_id)
    served = Q()
    for unit in units:
        if unit.task_kinds and unit.served_zones:
            served |= Q(warehouse_id=unit.warehouse_id, kind__in=unit.task_kinds, zone__in=unit.served_zones)
    if not served:
        return 0
    task_ids = list(
        Task.objects.filter(served, status=Task.Status.CREATED, instruction_seq=0, performer=Task.Performer.PERSON)
        .order_by("-priority", "created_at")
        .values_list("pk", flat=True)[:limit]
    )
    sent = 0
    for task_id in task_ids:
        try:
            sent += task_handoff(task=task_id, now=now, actor=actor, reason="Handed to the WCS (catch-up)") is not None
        except DomainError as error:
            logger.warning("pending hand-off refused", extra={"task_id": task_id, "error": error.message})
    return sent


def handoffs_expire(*, now: dt.datetime, actor: Actor = DISPATCHER, limit: int = 500) -> int:
    """Instructions not acknowledged by their deadline: resend (new instruction) or fall back to manual."""
    expired = 0
    for task_id in list(
        Task.objects.awaiting_acknowledgement(now).order_by("ack_deadline").values_list("pk", flat=True)[:limit]
    ):
        with transaction.atomic():
            task = _lock_task(task_id)
            if not (
                task.status == Task.Status.DISPATCHED
                and task.performer == MACHINE
                and task.ack_deadline
                and task.ack_deadline <= now
            ):
                continue  # acknowledged or moved on meanwhile
            _expire_one(task, now=now, actor=actor)
            expired += 1
    return expired


def handoffs_detect_stalled(*, now: dt.datetime, actor: Actor = DISPATCHER, limit: int = 200) -> int:
    """Machine tasks in progress past their unit's progress timeout: one automation-fault case each.

    The unit took the work and went quiet about it (a tote stuck in a conveyor, an AMR that lost
    the job). Nothing is re-routed — the goods may be in the machine — but the supervisor sees it;
    the case closes itself when the task completes, is shorted, cancelled or moved to people.
    """
    timeouts = dict(Equipment.objects.values_list("code", "progress_timeout_seconds"))
    if not timeouts:
        return 0
    shortest = dt.timedelta(seconds=min(timeouts.values()))
    candidates = (
        Task.objects.filter(performer=MACHINE, status=Task.Status.IN_PROGRESS, started_at__lte=now - shortest)
        .select_related("order", "warehouse")
        .order_by("started_at", "pk")[:limit]
    )
    stalled = [
        task
        for task in candidates
        if task.equipment_code in timeouts
        and task.started_at <= now - dt.timedelta(seconds=timeouts[task.equipment_code])
    ]
    reported = _tasks_with_active_fault([task.pk for task in stalled])
    raised = 0
    for task in stalled:
        if task.pk in reported:
            continue
        timeout = timeouts[task.equipment_code]
        minutes = int((now - task.started_at).total_seconds() // 60)
        order_number = task.order.number if task.order else ""
        with transaction.atomic():
            _raise_case(
                type_code=AUTOMATION_FAULT,
                subject=task,
                subject_label=f"{task.get_kind_display()} task {task.pk} on {task.equipment_code}",
                summary=f"{task.get_kind_display()} task {task.pk} has been in progress on {task.equipment_code} "
                f"for {minutes} min without a completion (limit {timeout // 60} min); check the unit",
                context={
                    "task_id": task.pk,
                    "equipment": task.equipment_code,
                    "instruction_seq": task.instruction_seq,
                    "zone": task.zone,
                    "started_at": task.started_at.isoformat(),
                    "progress_timeout_seconds": timeout,
                    "order": order_number,
                },
                actor=actor,
                reason=f"No completion from {task.equipment_code} within {timeout} s of the start",
                warehouse=task.warehouse,
                materiality=Decimal(1),
                order_number=order_number,
            )
        raised += 1
    return raised


def _tasks_with_active_fault(task_ids: list[int]) -> set[int]:
    """Which of these tasks already have an open automation-fault case (one query)."""
    try:
        from exceptions.selectors import subjects_with_active_case
    except ImportError:
        return set()
    subject_ids = subjects_with_active_case(
        type_code=AUTOMATION_FAULT, subject_type=Task._meta.label_lower, subject_ids=task_ids
    )
    return {int(subject_id) for subject_id in subject_ids}


def task_fault_auto_resolve(*, task_id: int, event_name: str, actor: Actor) -> None:
    """A stalled task moved on (completed, shorted, cancelled, to people): its automation-fault case closes."""
    try:
        from exceptions.services import case_auto_resolve
    except ImportError:
        return
    case_auto_resolve(
        type_code=AUTOMATION_FAULT,
        subject_type=Task._meta.label_lower,
        subject_id=str(task_id),
        actor=actor,
        reason=f"The task moved on ({event_name.removeprefix('task.').replace('_', ' ')})",
    )


def _expire_one(task: Task, *, now: dt.datetime, actor: Actor) -> None:
    code, seq = task.equipment_code, task.instruction_seq
    unit = Equipment.objects.select_related("warehouse").filter(code=code).first()
    max_attempts = unit.max_dispatch_attempts if unit else 1
    timeout = unit.ack_timeout_seconds if unit else 0
    HandOff.objects.filter(task=task, instruction_seq=seq, status__in=HandOff.OPEN).update(
        status=HandOff.Status.TIMED_OUT, closed_at=now, note=f"No acknowledgement within {timeout} s"
    )
    emit(
        events.HANDOFF_TIMED_OUT,
        subject=task,
        actor=actor,
        reason=f"No acknowledgement from {code}",
        payload={
            "task_id": task.pk,
            "equipment": code,
            "instruction_seq": seq,
            "attempt": task.dispatch_attempts,
            "order_id": task.order_id,
            "zone": task.zone,
            "warehouse_id": task.warehouse_id,
        },
    )
    if task.dispatch_attempts < max_attempts:
        # The same unit first, as VDA 5050 resends with a new update id; another unit if it can no longer take it.
        units = candidates_for(task)
        preferred = [u for u in units if u.code == code] or units
        if preferred:
            unit_now = preferred[0]
            _send_instruction(
                task,
                unit_now,
                now=now,
                actor=actor,
                reason=(
                    f"Retry {task.dispatch_attempts + 1}/{max_attempts}: instruction {seq} to {code} not acknowledged "
                    f"within {timeout} s; resent to {unit_now.code}"
                ),
            )
            if unit_now.code != code:
                _cancel_instruction(
                    task, equipment_code=code, instruction_seq=seq, actor=actor, reason="not acknowledged; re-routed"
                )
            return
    reason = (
        f"No acknowledgement from {code} after {task.dispatch_attempts} attempt(s) "
        f"(timeout {timeout} s each): manual work for the zone {task.zone or '—'} supervisor"
    )
    orchestration.task_fall_back_to_manual(task=task, actor=actor, reason=reason)
    _cancel_instruction(task, equipment_code=code, instruction_seq=seq, actor=actor, reason="fell back to manual")


def _reroute_open_handoffs(equipment: Equipment, *, now: dt.datetime, actor: Actor, reason: str) -> list[dict]:
    """Move a stopped unit's waiting instructions elsewhere (or to people); list what happened to each task.

    Tasks already in progress stay with the unit: the goods are in the machine, and the work resumes
    when it clears. They are listed so the case shows them.
    """
    affected = []
    rows = (
        Task.objects.filter(equipment_code=equipment.code, performer=MACHINE, status__in=MACHINE_OPEN_STATES)
        .order_by("order_id", "pk")
        .values_list("pk", flat=True)
    )
    for task_id in list(rows):
        affected.append(
            _replace_task(
                task_id, exclude=(equipment.pk,), now=now, actor=actor, reason=reason, from_code=equipment.code
            )
        )
    return [entry for entry in affected if entry]


def _replace_task(
    task_id: int, *, exclude: tuple[int, ...], now: dt.datetime, actor: Actor, reason: str, from_code: str | None = None
) -> dict | None:
    task = _lock_task(task_id)
    if task.performer != MACHINE or (from_code is not None and task.equipment_code != from_code):
        return None
    order_number = task.order.number if task.order else ""
    entry = {
        "task_id": task.pk,
        "order": order_number,
        "kind": task.kind,
        "zone": task.zone,
        "status": task.status,
        "instruction_seq": task.instruction_seq,
        "from": task.equipment_code,
    }
    if task.status == Task.Status.IN_PROGRESS:
        return {**entry, "outcome": "held_in_unit", "to": task.equipment_code}
    if task.status not in HANDED_STATES:
        return None
    old_code, old_seq = task.equipment_code, task.instruction_seq
    unit = Equipment.objects.filter(code=old_code).first()
    max_attempts = unit.max_dispatch_attempts if unit else 1
    HandOff.objects.filter(task=task, instruction_seq=old_seq, status__in=HandOff.OPEN).update(
        status=HandOff.Status.REROUTED, closed_at=now, note=reason
    )
    units = candidates_for(task, exclude=exclude) if task.dispatch_attempts < max_attempts else []
    if units:
        _send_instruction(task, units[0], now=now, actor=actor, reason=f"Re-routed from {old_code}: {reason}")
        _cancel_instruction(task, equipment_code=old_code, instruction_seq=old_seq, actor=actor, reason=reason)
        return {**entry, "outcome": "rerouted", "to": units[0].code}
    orchestration.task_fall_back_to_manual(
        task=task,
        actor=actor,
        reason=f"{reason}; no other unit can take it: manual work for the zone {task.zone or '—'} supervisor",
    )
    _cancel_instruction(task, equipment_code=old_code, instruction_seq=old_seq, actor=actor, reason=reason)
    return {**entry, "outcome": "manual", "to": ""}


def handoffs_reconcile(*, now: dt.datetime, actor: Actor = DISPATCHER, limit: int = 500) -> int:
    """Re-route instructions held by units that cannot take work (a stop that raced a dispatch)."""
    stopped = list(Equipment.objects.exclude(status__in=Equipment.DISPATCHABLE).values_list("code", flat=True))
    stopped += list(Equipment.objects.filter(is_active=False).values_list("code", flat=True))
    if not stopped:
        return 0
    task_ids = list(
        Task.objects.filter(performer=MACHINE, status__in=HANDED_STATES, equipment_code__in=stopped)
        .order_by("order_id", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    moved = 0
    for task_id in task_ids:
        with transaction.atomic():
            code = Task.objects.values_list("equipment_code", flat=True).get(pk=task_id)
            unit = Equipment.objects.filter(code=code).first()
            entry = _replace_task(
                task_id,
                exclude=(unit.pk,) if unit else (),
                now=now,
                actor=actor,
                reason=f"{code} cannot take work ({unit.status if unit else 'unknown unit'})",
                from_code=code,
            )
            if entry and unit:
                fault = unit.faults.filter(cleared_at__isnull=True).first()
                if fault is not None:
                    fault.affected_tasks = [*fault.affected_tasks, entry]
                    if entry["order"] and entry["order"] not in fault.order_numbers:
                        fault.order_numbers = [*fault.order_numbers, entry["order"]]
                    fault.save(update_fields=["affected_tasks", "order_numbers"])
            moved += entry is not None
    return moved


# --- WCS execution events ------------------------------------------------------------------


@dataclass(frozen=True)
class WcsOutcome:
    """What a WCS event did: applied, or ignored with the reason (stale instruction, unknown task …)."""

    applied: bool
    note: str


def _wcs_task(task_id, instruction_seq, equipment_code: str) -> tuple[Task | None, str]:
    try:
        task = Task.objects.get(pk=int(task_id))
    except (Task.DoesNotExist, TypeError, ValueError):
        return None, f"unknown task {task_id!r}"
    if instruction_seq is not None and int(instruction_seq) != task.instruction_seq:
        return None, f"stale instruction {instruction_seq} (task {task.pk} is at {task.instruction_seq})"
    if task.performer != MACHINE:
        return None, f"task {task.pk} is manual work now"
    if equipment_code and task.equipment_code and equipment_code != task.equipment_code:
        return None, f"task {task.pk} is with {task.equipment_code}, not {equipment_code}"
    return task, ""


def wcs_task_event(
    *,
    event: str,
    task_id,
    instruction_seq=None,
    equipment_code: str = "",
    done_quantity: int | None = None,
    now: dt.datetime,
    actor: Actor,
    reason: str = "",
) -> WcsOutcome:
    """Apply a WCS execution event (acknowledged, started, completed, short) to the task it names.

    Events for an instruction that is no longer current (re-routed, retried, fallen back) are
    ignored, like a VDA 5050 vehicle's state for an outdated order update.
    """
    if event not in ("acknowledged", "started", "completed", "short"):
        raise InvalidInput(
            f"Unknown WCS task event {event!r}.", fields={"type": ["acknowledged, started, completed or short"]}
        )
    task, stale = _wcs_task(task_id, instruction_seq, equipment_code)
    if task is None:
        return WcsOutcome(False, stale)
    seq = task.instruction_seq
    reason = reason or f"WCS: {event} by {task.equipment_code}"
    try:
        if event == "acknowledged":
            if task.status != Task.Status.DISPATCHED:
                return WcsOutcome(False, f"task {task.pk} is {task.status}; acknowledgement not needed")
            orchestration.task_acknowledge(task=task, instruction_seq=seq, actor=actor, reason=reason)
        elif event == "started":
            if task.status == Task.Status.IN_PROGRESS:
                return WcsOutcome(False, f"task {task.pk} already in progress")
            orchestration.task_start(task=task, instruction_seq=seq, actor=actor, reason=reason)
        else:
            if task.status in Task.DONE_STATES:
                return WcsOutcome(False, f"task {task.pk} already {task.status}")
            done = task.quantity if done_quantity is None and event == "completed" else done_quantity
            if done is None:
                raise InvalidInput("A short confirmation needs done_quantity.", fields={"done_quantity": ["Required."]})
            if event == "short" and done >= task.quantity:
                raise InvalidInput(
                    f"A short confirmation must confirm fewer than {task.quantity} units.",
                    fields={"done_quantity": [f"Less than {task.quantity}."]},
                )
            orchestration.task_complete(
                task=task, done_quantity=int(done), instruction_seq=seq, actor=actor, reason=reason
            )
    except TransitionRefused as refused:
        if refused.code == "stale_instruction":
            return WcsOutcome(False, refused.message)
        raise
    return WcsOutcome(True, f"task {task.pk} {event}")


# --- hand-off log kept in step with the task -----------------------------------------------

TASK_EVENT_HANDOFF_STATUS = {
    "task.acknowledged": HandOff.Status.ACKNOWLEDGED,
    "task.started": HandOff.Status.IN_PROGRESS,
    "task.completed": HandOff.Status.COMPLETED,
    "task.short_picked": HandOff.Status.SHORT,
    "task.cancelled": HandOff.Status.CANCELLED,
    "task.failed": HandOff.Status.FAILED,
    "task.fell_back_to_manual": HandOff.Status.FELL_BACK,
}


def handoff_follow_task(*, event_name: str, payload: dict, now: dt.datetime) -> int:
    """Bring the open hand-off of a machine task in line with what happened to the task (any actor)."""
    status = TASK_EVENT_HANDOFF_STATUS.get(event_name)
    if status is None or not payload.get("task_id"):
        return 0
    rows = HandOff.objects.filter(task_id=payload["task_id"], status__in=HandOff.OPEN)
    if event_name != "task.fell_back_to_manual":
        rows = rows.filter(instruction_seq=payload.get("instruction_seq"))
    changes: dict[str, object] = {"status": status}
    if status == HandOff.Status.ACKNOWLEDGED:
        changes["acknowledged_at"] = now
    elif status == HandOff.Status.IN_PROGRESS:
        rows = rows.filter(status__in=[HandOff.Status.SENT, HandOff.Status.ACKNOWLEDGED])
    else:
        changes["closed_at"] = now
    return rows.update(**changes)


# --- recommendations (advisory rules and the risk model) -----------------------------------


def _lock_recommendation(recommendation: Recommendation | int) -> Recommendation:
    pk = recommendation.pk if isinstance(recommendation, Recommendation) else recommendation
    return Recommendation.objects.select_for_update(no_key=True).get(pk=pk)


def _decide(
    recommendation: Recommendation,
    status: str,
    *,
    actor: Actor,
    reason: str,
    chosen_action: str = "",
    now: dt.datetime | None = None,
) -> None:
    recommendation.status = status
    recommendation.decided_by = actor.label
    recommendation.decided_reason = reason
    recommendation.decided_at = now or timezone.now()
    recommendation.chosen_action = chosen_action
    stamp_history(recommendation, actor=actor, reason=reason)
    recommendation.save(
        update_fields=["status", "decided_by", "decided_reason", "decided_at", "chosen_action", "updated_at"]
    )
    emit(
        events.RECOMMENDATION_DECIDED,
        subject=recommendation,
        actor=actor,
        reason=reason,
        payload={
            "recommendation_id": recommendation.pk,
            "source": recommendation.source,
            "action": recommendation.action,
            "status": status,
            "chosen_action": chosen_action,
            "order": recommendation.order_number,
            "case_id": recommendation.case_id,
            "confidence": recommendation.confidence,
        },
    )


def recommendation_accept(*, recommendation: Recommendation | int, actor: Actor, reason: str) -> Recommendation:
    """A person takes the advice: the recommended action runs now, in their name."""
    require_reason(reason)
    with transaction.atomic():
        recommendation = _lock_recommendation(recommendation)
        if recommendation.status != Recommendation.Status.OPEN:
            raise TransitionRefused(f"This recommendation is already {recommendation.get_status_display().lower()}.")
        _execute_recommendation(recommendation, actor=actor, reason=reason)
        _decide(recommendation, Recommendation.Status.ACCEPTED, actor=actor, reason=reason)
    return recommendation


def recommendation_override(
    *, recommendation: Recommendation | int, actor: Actor, reason: str, chosen_action: str = ""
) -> Recommendation:
    """A person rejects the advice (optionally naming what they did instead); the reason is required."""
    require_reason(reason)
    with transaction.atomic():
        recommendation = _lock_recommendation(recommendation)
        if recommendation.status != Recommendation.Status.OPEN:
            raise TransitionRefused(f"This recommendation is already {recommendation.get_status_display().lower()}.")
        _decide(
            recommendation, Recommendation.Status.OVERRIDDEN, actor=actor, reason=reason, chosen_action=chosen_action
        )
    return recommendation


def recommendations_follow_case(*, case_id: int, resolution: str, actor: Actor, reason: str) -> int:
    """A case was resolved by someone: its open suggestions count as accepted (same action) or overridden."""
    decided = 0
    with transaction.atomic():
        for recommendation in Recommendation.objects.select_for_update(no_key=True).filter(
            case_id=case_id, status=Recommendation.Status.OPEN, source=Recommendation.Source.RISK_MODEL
        ):
            same = recommendation.action == resolution
            _decide(
                recommendation,
                Recommendation.Status.ACCEPTED if same else Recommendation.Status.OVERRIDDEN,
                actor=actor,
                reason=reason or f"Case resolved with {resolution}",
                chosen_action="" if same else resolution,
            )
            decided += 1
    return decided


def _execute_recommendation(recommendation: Recommendation, *, actor: Actor, reason: str) -> None:
    if recommendation.source == Recommendation.Source.RISK_MODEL:
        if recommendation.case_id:
            from exceptions.models import Case
            from exceptions.services import case_resolve

            case_resolve(
                case=Case.objects.get(pk=recommendation.case_id),
                resolution=recommendation.action,
                actor=actor,
                reason=reason,
            )
        return  # an order flag is advice to read, nothing to run
    from automation import rules
    from portal.models import DomainEvent

    firing = recommendation.firing
    if firing is None or firing.event_id is None:
        raise TransitionRefused("The event this recommendation came from is gone; act on the order or case directly.")
    event = DomainEvent.objects.get(pk=firing.event_id)
    trigger = rules.TRIGGERS[event.name]
    rules.execute_action(recommendation.params, rules.EventContext(event, trigger=trigger), actor=actor, reason=reason)


# --- risk ----------------------------------------------------------------------------------


def flag_policy() -> RiskPolicy | None:
    """The enabled high-risk flag policy (its case type names what it raises, not what it covers)."""
    return (
        RiskPolicy.objects.filter(decision=RiskPolicy.Decision.FLAG_HIGH_RISK_ORDER, enabled=True)
        .order_by("case_type_code", "pk")
        .first()
    )


def policy_for(decision: str, case_type_code: str = "") -> RiskPolicy | None:
    """The enabled policy for a decision: the one for this case type, else the one for every type."""
    policies = {
        p.case_type_code: p
        for p in RiskPolicy.objects.filter(decision=decision, enabled=True, case_type_code__in=[case_type_code, ""])
    }
    return policies.get(case_type_code) or policies.get("")


def order_score_risk(
    *, order: Order | int, now: dt.datetime | None = None, actor: Actor = Actor.policy("risk-model")
) -> float:
    """Score an order's fulfilment risk, store it for release sequencing and flag it if the policy says so."""
    from automation import risk

    order_id = order if isinstance(order, int) else order.pk
    now = now or timezone.now()
    with transaction.atomic():
        assessment = risk.assess_order(order_id, now=now)
        if assessment is None:
            return 0.0
        # risk_score is the automation app's output stored on the order for release sequencing; a
        # derived figure rewritten on every scoring, so a column update rather than a history row.
        Order.objects.filter(pk=order_id).update(risk_score=assessment.score)
        _maybe_flag_order(assessment, now=now, actor=actor)
    return assessment.score


def _maybe_flag_order(assessment, *, now: dt.datetime, actor: Actor) -> Recommendation | None:
    policy = flag_policy()
    if policy is None or policy.mode == RiskPolicy.Mode.OFF or assessment.score < policy.confidence_threshold:
        return None
    if assessment.cutoff_at is not None and now >= assessment.cutoff_at:
        return None  # after the cutoff the flag comes too late to help; the cutoff-miss case takes over
    order_number = assessment.order_number
    if Recommendation.objects.filter(
        order_number=order_number,
        action="flag_high_risk_order",
        status__in=[Recommendation.Status.OPEN, Recommendation.Status.EXECUTED],
    ).exists():
        return None
    reasons = assessment.reasons
    summary = (
        f"Fulfilment risk {assessment.score:.0%} for {order_number}"
        f"{f' before the {assessment.cutoff_at:%H:%M} cutoff' if assessment.cutoff_at else ''}: "
        + "; ".join(reasons[:3])
    )
    recommendation = Recommendation.objects.create(
        source=Recommendation.Source.RISK_MODEL,
        subject_type="orchestration.order",
        subject_id=str(assessment.order_id),
        order_number=order_number,
        action="flag_high_risk_order",
        summary=summary,
        confidence=assessment.score,
        reasons=reasons,
        policy=policy,
        model_version=assessment.model_version,
        params={"cutoff_at": assessment.cutoff_at.isoformat() if assessment.cutoff_at else None},
    )
    if policy.mode == RiskPolicy.Mode.AUTOMATIC:
        case_type = policy.case_type_code or "partial_shipment_decision"
        order = Order.objects.select_related("warehouse", "customer").get(pk=assessment.order_id)
        _raise_case(
            type_code=case_type,
            subject=order,
            subject_label=order_number,
            summary=summary,
            context={
                "risk_score": assessment.score,
                "reasons": reasons,
                "model_version": assessment.model_version,
                "recommendation_id": recommendation.pk,
            },
            actor=actor,
            reason=f"Risk policy “{policy.name}”: score {assessment.score:.2f} ≥ {policy.confidence_threshold:.2f}",
            warehouse=order.warehouse,
            customer_tier=order.customer.service_tier,
            materiality=order.total_value,
            order_number=order_number,
        )
        _decide(
            recommendation,
            Recommendation.Status.EXECUTED,
            actor=actor,
            now=now,
            reason=f"Automatic under policy “{policy.name}” (≥ {policy.confidence_threshold:.2f})",
        )
    else:
        from portal.live import broadcast, role_group

        data = {
            "type": "notification",
            "seq": recommendation.pk,
            "message": summary,
            "order": order_number,
            "source": "risk_model",
        }
        transaction.on_commit(lambda: broadcast({role_group("customer_service")}, data))
    return recommendation


def case_suggest_resolution(
    *, case_id: int, actor: Actor = Actor.policy("risk-model"), now: dt.datetime | None = None
) -> Recommendation | None:
    """Suggest a resolution for a new case; execute it when the policy allows and the confidence is enough."""
    from automation import risk
    from exceptions.models import Case

    now = now or timezone.now()
    with transaction.atomic():
        # Read, not locked: case_resolve takes the locks in the fixed order (the case's cause, then the case).
        case = Case.objects.select_related("type", "warehouse").get(pk=case_id)
        type_code = case.type.code
        policy = policy_for(RiskPolicy.Decision.CASE_RESOLUTION, type_code)
        if policy is not None and policy.mode == RiskPolicy.Mode.OFF:
            return None
        if Recommendation.objects.filter(case_id=case.pk, source=Recommendation.Source.RISK_MODEL).exists():
            return None
        suggestion = risk.suggest_resolution(case)
        if suggestion is None:
            return None
        recommendation = Recommendation.objects.create(
            source=Recommendation.Source.RISK_MODEL,
            subject_type="exceptions.case",
            subject_id=str(case.pk),
            case_id=case.pk,
            order_number=getattr(case, "order_number", "") or "",
            action=suggestion.resolution,
            summary=f"Suggested: {suggestion.resolution} ({suggestion.confidence:.0%} confidence)",
            confidence=suggestion.confidence,
            reasons=suggestion.reasons,
            policy=policy,
            model_version=suggestion.model_version,
        )
        if (
            policy is not None
            and policy.mode == RiskPolicy.Mode.AUTOMATIC
            and suggestion.confidence >= policy.confidence_threshold
        ):
            from exceptions.services import case_resolve

            reason = (
                f"Risk policy “{policy.name}”: {suggestion.resolution} at {suggestion.confidence:.0%} "
                f"≥ {policy.confidence_threshold:.0%}; " + "; ".join(suggestion.reasons[:2])
            )
            try:
                with transaction.atomic():
                    case_resolve(case=case, resolution=suggestion.resolution, actor=actor, reason=reason)
                    _decide(recommendation, Recommendation.Status.EXECUTED, actor=actor, reason=reason, now=now)
            except DomainError as error:
                recommendation.reasons = [*recommendation.reasons, f"Could not execute automatically: {error.message}"]
                recommendation.save(update_fields=["reasons", "updated_at"])
    return recommendation


# --- rules ---------------------------------------------------------------------------------


def rule_save(*, rule: Rule, actor: Actor, reason: str) -> Rule:
    """Store an edited rule (validated; every stored edit gets a new version) with who and why on its history."""
    require_reason(reason)
    rule.full_clean()
    with transaction.atomic():
        stamp_history(rule, actor=actor, reason=reason)
        rule.save()
    return rule


def rules_set_enabled(*, rule_ids: list[int], enabled: bool, actor: Actor, reason: str) -> int:
    """Switch rules on or off, each a new version with its history row; returns how many changed."""
    require_reason(reason)
    changed = 0
    with transaction.atomic():
        for rule in Rule.objects.filter(pk__in=rule_ids).order_by("pk").select_for_update(no_key=True):
            if rule.enabled == enabled:
                continue
            rule.enabled = enabled
            stamp_history(rule, actor=actor, reason=reason)
            rule.save(update_fields=["enabled"])
            changed += 1
    return changed
