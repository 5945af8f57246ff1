"""Reads shared by the board, the dry run, the order timeline and the case page."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field

from django.db.models import Count

from automation.models import Equipment, EquipmentFault, HandOff, Recommendation, RuleFiring
from orchestration.models import Task
from portal.formatting import duration

STATUS_BADGE: dict[str, str] = {
    Equipment.Status.ONLINE: "ok",
    Equipment.Status.DEGRADED: "warn",
    Equipment.Status.OFFLINE: "bad",
    Equipment.Status.FAULTED: "bad",
    Equipment.Status.MAINTENANCE: "info",
}
MACHINE_OPEN = [Task.Status.DISPATCHED, Task.Status.ACKNOWLEDGED, Task.Status.IN_PROGRESS]


@dataclass
class UnitCard:
    """One unit on the board."""

    equipment: Equipment
    badge: str
    heartbeat_age: str
    in_flight: dict[str, int]
    in_flight_total: int
    faults: list[dict]


@dataclass
class ZoneRow:
    """A zone of a warehouse: its units and the manual work fallbacks left there."""

    warehouse: str
    zone: str
    units: list[UnitCard] = field(default_factory=list)
    manual_fallbacks: int = 0
    worst: str = "ok"


@dataclass
class Board:
    """The equipment board: zones with their units, and the headline figures."""

    zones: list[ZoneRow]
    counts: dict[str, int]
    in_flight_total: int
    open_faults: int
    oldest_fault_age: str
    manual_fallbacks: int
    seq: int


def equipment_board(*, now: dt.datetime, warehouse: str | None = None) -> Board:
    """Everything the board shows, in a constant number of queries whatever the number of units and tasks."""
    from portal.models import DomainEvent

    active = (
        Equipment.objects.filter(is_active=True).select_related("warehouse").order_by("warehouse__code", "zone", "code")
    )
    if warehouse:
        active = active.filter(warehouse__code=warehouse)
    units = list(active)
    codes = [u.code for u in units]
    in_flight: dict[str, dict[str, int]] = defaultdict(dict)
    for code, status, count in (
        Task.objects.filter(performer=Task.Performer.MACHINE, status__in=MACHINE_OPEN, equipment_code__in=codes)
        .values_list("equipment_code", "status")
        .annotate(n=Count("id"))
    ):
        in_flight[code][status] = count
    faults: dict[int, list[dict]] = defaultdict(list)
    oldest = None
    open_faults = EquipmentFault.objects.filter(cleared_at__isnull=True, equipment__in=units).order_by("opened_at")
    for fault in open_faults:
        age = (now - fault.opened_at).total_seconds()
        oldest = age if oldest is None else max(oldest, age)
        faults[fault.equipment_id].append(
            {
                "kind": fault.get_kind_display(),
                "code": fault.code,
                "age": duration(age),
                "case_id": fault.case_id,
                "tasks": len(fault.affected_tasks),
                "message": fault.message,
            }
        )
    fallbacks = {
        (warehouse_id, zone): count
        for warehouse_id, zone, count in Task.objects.filter(
            status=Task.Status.CREATED,
            performer=Task.Performer.PERSON,
            instruction_seq__gt=0,
            warehouse_id__in={u.warehouse_id for u in units},
        )
        .values_list("warehouse_id", "zone")
        .annotate(n=Count("id"))
    }
    zones: dict[tuple[int, str], ZoneRow] = {}
    counts = dict.fromkeys(Equipment.Status.values, 0)
    severity = {"ok": 0, "info": 1, "warn": 2, "bad": 3}
    for unit in units:
        key = (unit.warehouse_id, unit.zone)
        row = zones.get(key)
        if row is None:
            row = zones[key] = ZoneRow(
                warehouse=unit.warehouse.code, zone=unit.zone, manual_fallbacks=fallbacks.get(key, 0)
            )
        badge = STATUS_BADGE[unit.status]
        seen = unit.last_heartbeat_at or unit.status_changed_at
        row.units.append(
            UnitCard(
                equipment=unit,
                badge=badge,
                heartbeat_age=duration((now - seen).total_seconds()) if seen else "never",
                in_flight=in_flight.get(unit.code, {}),
                in_flight_total=sum(in_flight.get(unit.code, {}).values()),
                faults=faults.get(unit.pk, []),
            )
        )
        if severity[badge] > severity[row.worst]:
            row.worst = badge
        counts[unit.status] += 1
    seq = DomainEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    return Board(
        zones=list(zones.values()),
        counts=counts,
        in_flight_total=sum(sum(v.values()) for v in in_flight.values()),
        open_faults=sum(len(v) for v in faults.values()),
        oldest_fault_age=duration(oldest) if oldest is not None else "",
        manual_fallbacks=sum(r.manual_fallbacks for r in zones.values()),
        seq=seq,
    )


def recommendations_for(*, order_number: str = "", case_id: int | None = None, open_only: bool = False):
    """Advice shown on an order or a case page: advisory rule firings and risk-model suggestions."""
    rows = Recommendation.objects.all()
    if case_id is not None:
        rows = rows.filter(case_id=case_id)
    elif order_number:
        rows = rows.filter(order_number=order_number)
    else:
        return Recommendation.objects.none()
    if open_only:
        rows = rows.filter(status=Recommendation.Status.OPEN)
    return rows.select_related("firing", "policy").order_by("-created_at", "-id")


def order_timeline_entries(order_number: str) -> list[dict]:
    """The automation side of an order's timeline: rule firings, recommendations and machine hand-offs.

    Entries have the shape {"at", "kind", "title", "detail", "actor"} so the order timeline can merge them.
    """
    entries = []
    for firing in RuleFiring.objects.filter(order_number=order_number).order_by("fired_at", "id"):
        detail = "; ".join(f"{a.get('detail', a.get('type'))} ({a.get('status')})" for a in firing.actions)
        entries.append(
            {
                "at": firing.fired_at,
                "kind": "rule_firing",
                "title": f"Rule “{firing.rule_name}” v{firing.rule_version} "
                f"{'recommended' if firing.mode == RuleFiring.Mode.ADVISORY else 'fired'} "
                f"on {firing.trigger}",
                "detail": detail + (f" — error: {firing.error}" if firing.error else ""),
                "actor": f"rule:{firing.rule_name}",
            }
        )
    for recommendation in Recommendation.objects.filter(order_number=order_number).order_by("created_at", "id"):
        entries.append(
            {
                "at": recommendation.created_at,
                "kind": "recommendation",
                "title": recommendation.summary,
                "detail": "; ".join(recommendation.reasons[:3]),
                "actor": recommendation.source,
            }
        )
        if recommendation.decided_at:
            entries.append(
                {
                    "at": recommendation.decided_at,
                    "kind": "recommendation_decision",
                    "title": f"Recommendation {recommendation.get_status_display().lower()}: {recommendation.action}",
                    "detail": recommendation.decided_reason,
                    "actor": recommendation.decided_by,
                }
            )
    for handoff in (
        HandOff.objects.filter(order_number=order_number).select_related("equipment").order_by("sent_at", "id")
    ):
        entries.append(
            {
                "at": handoff.sent_at,
                "kind": "handoff",
                "title": f"Task {handoff.task_id} instruction {handoff.instruction_seq} to "
                f"{handoff.equipment.code}: {handoff.get_status_display().lower()}",
                "detail": handoff.note,
                "actor": "system:wcs-dispatcher",
            }
        )
    return sorted(entries, key=lambda e: e["at"])


def rule_firings(*, rule_id: int | None = None, limit: int = 100):
    rows = RuleFiring.objects.select_related("rule").order_by("-fired_at", "-id")
    if rule_id is not None:
        rows = rows.filter(rule_id=rule_id)
    return rows[:limit]


def order_timeline(order) -> list:
    """The automation entries of an order's timeline (a portal.timeline source; three queries)."""
    from portal.timeline import TimelineEntry

    return [TimelineEntry(**entry) for entry in order_timeline_entries(order.number)]


# --- one unit ------------------------------------------------------------------------------

STRIP_HOURS = 24
FAULT_DAYS = 7
UNIT_ROWS = 50  # faults, open instructions and status changes shown on a unit's page


@dataclass
class StatusSpan:
    """A stretch of the strip: the unit in one status from `start` to `end`, placed as a share of the window."""

    status: str
    label: str
    start: dt.datetime
    end: dt.datetime
    left: float  # percent of the window
    width: float  # percent of the window
    reason: str = ""


@dataclass
class UnitDetail:
    equipment: Equipment
    badge: str
    heartbeat_age: str
    since: dt.datetime
    spans: list[StatusSpan]
    ticks: list[dict]
    available_share: int  # percent of the recorded window online or degraded (able to take work)
    stopped_for: str  # time faulted or offline in the window, in words
    changes: list  # the status changes in the window, newest first (history rows)
    faults: list[dict]
    open_handoffs: list[HandOff]
    outcomes: list[dict]  # instructions sent in the window, by how they ended
    seq: int  # the latest domain event when read: live hints not newer are already shown


def unit_detail(equipment: Equipment, *, now: dt.datetime, hours: int = STRIP_HOURS) -> UnitDetail:
    """A unit's last `hours`: its status over time, faults, open instructions and how instructions ended.

    Six queries whatever the unit's history: the status changes in the window and the one before it,
    its faults of the last week, its open instructions, their outcomes in the window, and the event sequence.
    """
    from portal.models import DomainEvent

    since = now - dt.timedelta(hours=hours)
    history = equipment.history.only("status", "status_changed_at", "status_reason", "history_date", "history_actor")
    before = history.filter(status_changed_at__lt=since).order_by("-status_changed_at", "-history_id").first()
    rows = list(history.filter(status_changed_at__gte=since, status_changed_at__lte=now).order_by("status_changed_at"))
    changes = []  # rows where the status actually changed (other edits of the unit write history too)
    current = before.status if before is not None else None
    for row in rows:
        if row.status != current:
            changes.append(row)
            current = row.status
    spans = _status_spans(before, changes, since=since, now=now)
    recorded = sum((s.end - s.start).total_seconds() for s in spans)  # a unit added in the window: from then on
    available = sum((s.end - s.start).total_seconds() for s in spans if s.status in Equipment.DISPATCHABLE)
    stopped = sum(
        (s.end - s.start).total_seconds()
        for s in spans
        if s.status in (Equipment.Status.FAULTED, Equipment.Status.OFFLINE)
    )
    faults = [
        {
            "fault": fault,
            "lasted": duration(((fault.cleared_at or now) - fault.opened_at).total_seconds()),
            "tasks": len(fault.affected_tasks),
        }
        for fault in equipment.faults.filter(opened_at__gte=now - dt.timedelta(days=FAULT_DAYS)).order_by("-opened_at")[
            :UNIT_ROWS
        ]
    ]
    open_handoffs = list(
        equipment.handoffs.filter(status__in=HandOff.OPEN).select_related("task").order_by("sent_at", "id")[:UNIT_ROWS]
    )
    for handoff in open_handoffs:
        handoff.overdue = (
            handoff.status == HandOff.Status.SENT and handoff.ack_deadline is not None and handoff.ack_deadline < now
        )
        handoff.age = duration((now - handoff.sent_at).total_seconds())
    counted = dict(
        equipment.handoffs.filter(sent_at__gte=since).values_list("status").annotate(n=Count("id")).order_by()
    )
    outcomes = [
        {"status": status, "label": label, "count": counted[status]}
        for status, label in HandOff.Status.choices
        if counted.get(status)
    ]
    seen = equipment.last_heartbeat_at or equipment.status_changed_at
    return UnitDetail(
        equipment=equipment,
        badge=STATUS_BADGE[equipment.status],
        heartbeat_age=duration((now - seen).total_seconds()) if seen else "never",
        since=since,
        spans=spans,
        ticks=_hour_ticks(since, now, zone=equipment.warehouse.time_zone),
        available_share=round(100 * available / recorded) if recorded else 0,
        stopped_for=duration(stopped) if stopped else "",
        changes=list(reversed(changes))[:UNIT_ROWS],
        faults=faults,
        open_handoffs=open_handoffs,
        outcomes=outcomes,
        seq=DomainEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0,
    )


def _status_spans(before, changes: list, *, since: dt.datetime, now: dt.datetime) -> list[StatusSpan]:
    """The window cut into stretches of one status; before the unit's first record, no stretch."""
    window = (now - since).total_seconds() or 1
    points = ([(since, before.status, before.status_reason)] if before is not None else []) + [
        (row.status_changed_at, row.status, row.status_reason) for row in changes
    ]
    spans = []
    for index, (start, status, reason) in enumerate(points):
        end = points[index + 1][0] if index + 1 < len(points) else now
        if end <= start:
            continue
        spans.append(
            StatusSpan(
                status=status,
                label=Equipment.Status(status).label,
                start=start,
                end=end,
                left=round(100 * (start - since).total_seconds() / window, 3),
                width=round(100 * (end - start).total_seconds() / window, 3),
                reason=reason,
            )
        )
    return spans


NOW_LABEL_SHARE = 0.05  # of the strip's width, at its right end, kept for the "now" label


def _hour_ticks(since: dt.datetime, now: dt.datetime, *, zone: str, every_hours: int = 3) -> list[dict]:
    """Labels under the strip every few hours, in the warehouse's local time, placed as a share of the window.

    None within the last hour or so of the window, where the strip's "now" label sits.
    """
    window = (now - since).total_seconds() or 1
    last = now - max(dt.timedelta(hours=1), (now - since) * NOW_LABEL_SHARE)
    local = since.astimezone(zoneinfo.ZoneInfo(zone or "UTC"))
    first = local.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    ticks = []
    tick = first
    while tick < last:
        if tick.hour % every_hours == 0:
            ticks.append(
                {"label": tick.strftime("%H:%M"), "left": round(100 * (tick - since).total_seconds() / window, 3)}
            )
        tick += dt.timedelta(hours=1)
    return ticks


# --- the home page ---------------------------------------------------------------------------

# Units not online, worst first: stopped, then degraded, then in maintenance.
ATTENTION_ORDER = [
    Equipment.Status.FAULTED,
    Equipment.Status.OFFLINE,
    Equipment.Status.DEGRADED,
    Equipment.Status.MAINTENANCE,
]
HOME_UNITS = 8


def equipment_summary(*, now: dt.datetime) -> dict:
    """Units per status across active sites, and the units not online, worst and longest first (three queries)."""
    counts = dict.fromkeys(Equipment.Status.values, 0)
    active = Equipment.objects.filter(is_active=True, warehouse__is_active=True)
    for status, count in active.values_list("status").annotate(n=Count("id")).order_by():
        counts[status] = count
    rank = {status: index for index, status in enumerate(ATTENTION_ORDER)}
    attention = sorted(
        active.exclude(status=Equipment.Status.ONLINE).select_related("warehouse"),
        key=lambda unit: (rank[unit.status], unit.status_changed_at),
    )
    open_faults = dict(
        EquipmentFault.objects.filter(cleared_at__isnull=True, equipment__in=[u.pk for u in attention[:HOME_UNITS]])
        .values_list("equipment_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {
        "counts": counts,
        "stopped": counts[Equipment.Status.FAULTED] + counts[Equipment.Status.OFFLINE],
        "total": sum(counts.values()),
        "attention": [
            {
                "unit": unit,
                "badge": STATUS_BADGE[unit.status],
                "for": duration((now - unit.status_changed_at).total_seconds()),
                "faults": open_faults.get(unit.pk, 0),
            }
            for unit in attention[:HOME_UNITS]
        ],
        "more": max(0, len(attention) - HOME_UNITS),
    }
