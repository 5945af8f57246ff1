"""What the automation app does when other parts of the portal publish events.

In the triggering transaction: the rules engine, the hand-off log following its task, and the
board's live hint (sent on commit). After commit (once per event, in a worker): handing new
tasks to the WCS, scoring allocated orders, suggesting resolutions for new cases.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from automation import rules, services
from portal.events import subscribe
from portal.live import broadcast, role_group
from portal.roles import Role

logger = logging.getLogger(__name__)

BOARD_GROUPS = {role_group(Role.WAREHOUSE_SUPERVISOR), role_group(Role.OPERATIONS_ADMIN)}


def evaluate_rules(event) -> None:
    rules.evaluate_event(event)


for _trigger in rules.TRIGGERS:
    subscribe(_trigger, in_transaction=True, key="automation.rules")(evaluate_rules)


def _hint_board(event, **extra) -> None:
    """A small hint for open equipment boards, sent once the change commits (best effort by design)."""
    payload = event.payload or {}
    data = {
        "type": "equipment",
        "seq": event.pk,
        "event": event.name,
        "warehouse_id": payload.get("warehouse_id"),
        "zone": payload.get("zone", ""),
        "equipment": payload.get("equipment", ""),
        **extra,
    }
    transaction.on_commit(lambda: broadcast(BOARD_GROUPS, data))


# A task that ends this way no longer waits on its unit: a stalled-task case about it closes.
TASK_ENDS = {"task.completed", "task.short_picked", "task.cancelled", "task.failed", "task.fell_back_to_manual"}


@subscribe("task.*", in_transaction=True, key="automation.handoff_log")
def follow_machine_task(event) -> None:
    """Keep the hand-off log in step with its task, whoever moved it, and tell the board."""
    payload = event.payload or {}
    machine = payload.get("performer") == "machine" or event.name == "task.fell_back_to_manual"
    if not machine or event.name == "task.created":
        return
    changed = services.handoff_follow_task(event_name=event.name, payload=payload, now=event.occurred_at)
    if event.name in TASK_ENDS and payload.get("task_id"):
        services.task_fault_auto_resolve(task_id=payload["task_id"], event_name=event.name, actor=services.DISPATCHER)
    if changed or payload.get("performer") == "machine":
        _hint_board(event)


@subscribe("equipment.*", in_transaction=True, key="automation.board_equipment")
def equipment_changed(event) -> None:
    _hint_board(event)


@subscribe("handoff.*", in_transaction=True, key="automation.board_handoff")
def handoff_changed(event) -> None:
    _hint_board(event)


@subscribe("task.created", key="automation.dispatch")
def hand_new_task_to_wcs(event) -> None:
    """A new task that a unit can serve goes to the WCS as a work instruction."""
    task_id = (event.payload or {}).get("task_id")
    if task_id:
        services.task_handoff(task=task_id, now=timezone.now())


@subscribe("order.allocated", key="automation.risk_score")
def score_allocated_order(event) -> None:
    """Score the order's fulfilment risk once its stock is reserved (release sequencing reads it)."""
    order_id = (event.payload or {}).get("order_id") or event.subject_id
    if order_id:
        services.order_score_risk(order=int(order_id), now=timezone.now())


@subscribe("case.raised", key="automation.suggest_resolution")
def suggest_resolution(event) -> None:
    """Suggest (and, where policy allows, execute) a resolution for a new case."""
    case_id = (event.payload or {}).get("case_id") or event.subject_id
    if case_id:
        services.case_suggest_resolution(case_id=int(case_id))


@subscribe("case.resolved", key="automation.follow_case_resolution")
def record_case_resolution(event) -> None:
    """A person resolved a case: the suggestion for it is recorded as taken or overridden, with their reason."""
    from portal.actors import Actor

    payload = event.payload or {}
    case_id = payload.get("case_id") or event.subject_id
    resolution = payload.get("resolution") or payload.get("resolution_code") or ""
    if not case_id or not resolution:
        return
    kind, _, name = (event.actor or "system:unknown").partition(":")
    if kind == "policy":
        return  # the policy's own execution is already recorded on the recommendation
    services.recommendations_follow_case(
        case_id=int(case_id), resolution=resolution, actor=Actor(kind=kind, name=name), reason=event.reason
    )
