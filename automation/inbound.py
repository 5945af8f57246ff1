"""Handlers for the WCS's inbound events, registered with the integrations app's event processor.

The integrations app stores each signed event once (deduplicated by its event id) and calls the
handler registered for its type in a worker, in order per subject. These handlers translate the
WCS's words into automation and orchestration services. An event about an instruction that is no
longer current (re-routed, retried, fallen back to manual) is ignored, not an error.

Types and payloads:
  equipment.status          {equipment, status: online|degraded|offline|faulted|maintenance|cleared,
                             fault?: jam|fault, code?, message?}
  wcs.heartbeat             {equipment, status?}
  wcs.task.acknowledged     {task_id, instruction_seq, equipment}
  wcs.task.started          {task_id, instruction_seq, equipment}
  wcs.task.completed        {task_id, instruction_seq, equipment, done_quantity?}
  wcs.task.short            {task_id, instruction_seq, equipment, done_quantity}
  wcs.equipment.jam         {equipment, code?, message?}
  wcs.equipment.fault       {equipment, code?, message?}
  wcs.equipment.cleared     {equipment}
"""

from __future__ import annotations

import datetime as dt
import logging

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from automation import services
from automation.models import EquipmentFault
from portal.actors import Actor
from portal.domain import InvalidInput

logger = logging.getLogger(__name__)


def _parts(event) -> tuple[str, dict, dt.datetime, Actor]:
    """Type, payload, when it happened (never in the future) and the partner that said it."""
    if isinstance(event, dict):
        kind, payload, occurred, partner = (
            event.get("type", ""),
            event.get("payload") or {},
            event.get("occurred_at"),
            event.get("partner"),
        )
    else:
        kind, payload = getattr(event, "type", ""), getattr(event, "payload", None) or {}
        occurred, partner = getattr(event, "occurred_at", None), getattr(event, "partner", None)
    if isinstance(occurred, str):
        occurred = parse_datetime(occurred)
    now = timezone.now()
    when = min(occurred, now) if isinstance(occurred, dt.datetime) and timezone.is_aware(occurred) else now
    code = getattr(partner, "code", None) or (partner if isinstance(partner, str) else "wcs")
    return kind, payload, when, Actor.partner(code)


def _equipment_code(payload: dict) -> str:
    code = payload.get("equipment") or payload.get("equipment_code")
    if not isinstance(code, str) or not code:
        raise InvalidInput("The event names no equipment.", fields={"payload.equipment": ["Required."]})
    return code


def handle_equipment_status(event):
    """A unit's status as the WCS sees it: heartbeat, jam/fault, cleared, maintenance or offline."""
    kind, payload, when, actor = _parts(event)
    code = _equipment_code(payload)
    status = payload.get("status", "online")
    fault = payload.get("fault")
    if status in ("faulted", "jam", "fault") or fault in ("jam", "fault"):
        fault_kind = fault if fault in ("jam", "fault") else ("jam" if status == "jam" else "fault")
        return services.equipment_fault(
            equipment=code,
            kind=fault_kind,
            code=str(payload.get("code", "")),
            message=str(payload.get("message", "")),
            now=when,
            actor=actor,
        )
    if status == "cleared":
        return services.equipment_clear(equipment=code, now=when, actor=actor, reason="WCS reports the unit cleared")
    return services.equipment_heartbeat(equipment=code, status=status, now=when, actor=actor)


def handle_heartbeat(event):
    kind, payload, when, actor = _parts(event)
    return services.equipment_heartbeat(
        equipment=_equipment_code(payload), status=payload.get("status", "online"), now=when, actor=actor
    )


def handle_task_event(event):
    """acknowledged / started / completed / short for the instruction the event names."""
    kind, payload, when, actor = _parts(event)
    outcome = services.wcs_task_event(
        event=kind.rsplit(".", 1)[-1],
        task_id=payload.get("task_id"),
        instruction_seq=payload.get("instruction_seq"),
        equipment_code=payload.get("equipment", "") or "",
        done_quantity=payload.get("done_quantity"),
        now=when,
        actor=actor,
        reason=payload.get("note") or "",
    )
    if not outcome.applied:
        logger.info("WCS event ignored", extra={"type": kind, "note": outcome.note})
    return outcome


def handle_equipment_event(event):
    kind, payload, when, actor = _parts(event)
    code = _equipment_code(payload)
    what = kind.rsplit(".", 1)[-1]
    if what == "cleared":
        return services.equipment_clear(equipment=code, now=when, actor=actor, reason="WCS reports the unit cleared")
    return services.equipment_fault(
        equipment=code,
        kind=EquipmentFault.Kind.JAM if what == "jam" else EquipmentFault.Kind.FAULT,
        code=str(payload.get("code", "")),
        message=str(payload.get("message", "")),
        now=when,
        actor=actor,
    )


HANDLERS = {
    "equipment.status": handle_equipment_status,
    "wcs.heartbeat": handle_heartbeat,
    "wcs.task.acknowledged": handle_task_event,
    "wcs.task.started": handle_task_event,
    "wcs.task.completed": handle_task_event,
    "wcs.task.short": handle_task_event,
    "wcs.equipment.jam": handle_equipment_event,
    "wcs.equipment.fault": handle_equipment_event,
    "wcs.equipment.cleared": handle_equipment_event,
}


def handle(event):
    """Dispatch one inbound WCS event by its type (for callers that hold the event, e.g. tests)."""
    kind = event.get("type") if isinstance(event, dict) else getattr(event, "type", "")
    handler = HANDLERS.get(kind)
    if handler is None:
        raise InvalidInput(f"Unknown WCS event type {kind!r}.", fields={"type": [", ".join(HANDLERS)]})
    return handler(event)


def register() -> bool:
    """Register every handler with the integrations app; False while that app has no registry yet."""
    try:
        from integrations.inbound import register_event_handler
    except ImportError:
        logger.info("integrations.inbound.register_event_handler not available; WCS handlers not registered")
        return False
    for kind, handler in HANDLERS.items():
        register_event_handler(kind, handler)
    return True


registered = register()
