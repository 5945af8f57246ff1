"""Reads shared by the order pages, the timeline and the API: bounded queries whatever the data size."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Case as DbCase
from django.db.models import Count, DecimalField, F, FilteredRelation, Min, Prefetch, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, NullIf, TruncHour
from django.utils import timezone

from inventory import selectors as inventory_selectors
from inventory.models import CarrierCutoff, Reservation, Warehouse
from orchestration import events
from orchestration.models import Customer, Order, OrderLine, Shipment, ShipmentLine, Task
from orchestration.services import carrier_cutoff, local_now, pickup_cutoff
from portal.formatting import amount, duration
from portal.models import DomainEvent
from portal.roles import Role, allowed
from portal.timeline import TimelineEntry

# Who may open the order pages (the list, an order and its timeline).
ORDER_ROLES = (
    Role.CUSTOMER_SERVICE,
    Role.WAREHOUSE_SUPERVISOR,
    Role.FINANCE,
    Role.TRANSPORTATION,
    Role.OPERATIONS_ADMIN,
)


def may_open_orders(user) -> bool:
    """Whether `user` may open an order's page: other pages link order numbers only for them."""
    return allowed(user, *ORDER_ROLES)


STATUS_TONE = {
    Order.Status.RECEIVED: "",
    Order.Status.VALIDATED: "",
    Order.Status.REJECTED: "bad",
    Order.Status.CREDIT_HOLD: "bad",
    Order.Status.ALLOCATED: "info",
    Order.Status.PARTIALLY_ALLOCATED: "warn",
    Order.Status.BACKORDERED: "warn",
    Order.Status.RELEASED: "info",
    Order.Status.PICKING: "info",
    Order.Status.PACKED: "info",
    Order.Status.SHIPPED: "ok",
    Order.Status.INVOICED: "ok",
    Order.Status.CLOSED: "ok",
    Order.Status.ON_HOLD: "bad",
    Order.Status.CANCELLED: "",
}
TASK_TONE = {
    Task.Status.COMPLETED: "ok",
    Task.Status.SHORT: "bad",
    Task.Status.FAILED: "bad",
    Task.Status.CANCELLED: "",
    Task.Status.IN_PROGRESS: "info",
    Task.Status.DISPATCHED: "info",
    Task.Status.ACKNOWLEDGED: "info",
}


@dataclass(frozen=True)
class OrderFilters:
    status: str = ""  # a status, or NOT_PACKED for every status before packed
    warehouse: str = ""
    customer: str = ""
    ship_date: dt.date | None = None
    ship_by: dt.date | None = None  # due on or before
    carrier: str = ""  # a carrier, or NO_CARRIER
    search: str = ""


NOT_PACKED = "not_packed"  # the status filter's value for orders that still need work before the carrier


def order_list(filters: OrderFilters) -> QuerySet[Order]:
    """Orders for the list page, newest first, with customer, warehouse, its cutoffs and line totals (3 queries)."""
    orders = (
        Order.objects.select_related("customer", "warehouse")
        .prefetch_related(Prefetch("warehouse__carrier_cutoffs", queryset=CarrierCutoff.objects.all()))
        .annotate(line_count=Count("lines"), units=Sum("lines__quantity"))
        .order_by("-created_at", "-pk")
    )
    if filters.status == NOT_PACKED:
        orders = orders.filter(status__in=NOT_PACKED_STATES)
    elif filters.status:
        orders = orders.filter(status=filters.status)
    if filters.warehouse:
        orders = orders.filter(warehouse__code=filters.warehouse)
    if filters.customer:
        orders = orders.filter(customer__code=filters.customer)
    if filters.ship_date:
        orders = orders.filter(requested_ship_date=filters.ship_date)
    if filters.ship_by:
        orders = orders.filter(requested_ship_date__lte=filters.ship_by)
    if filters.carrier:
        orders = orders.filter(carrier="" if filters.carrier == NO_CARRIER else filters.carrier)
    if filters.search:
        term = filters.search.strip()
        orders = orders.filter(Q(number__icontains=term) | Q(external_ref__icontains=term))
    return orders


def due_state(order: Order, now: dt.datetime | None = None) -> dict:
    """How urgent the order is: its ship date against today, and today's cutoff at its warehouse."""
    now = now or timezone.now()
    cutoff = carrier_cutoff(order, now)  # the prefetched cutoffs: no query
    today = local_now(order.warehouse, now).date()
    open_ = order.status in Order.OPEN_STATES
    if not order.requested_ship_date:
        label, tone = "no date", ""
    elif order.requested_ship_date < today:
        label, tone = "overdue" if open_ else "", "bad" if open_ else ""
    elif order.requested_ship_date == today:
        label, tone = "today", "warn" if open_ else ""
    else:
        label, tone = f"in {(order.requested_ship_date - today).days} d", ""
    return {
        "label": label,
        "tone": tone,
        "cutoff": cutoff,
        "cutoff_label": cutoff.strftime("%H:%M"),  # the warehouse's own clock, not the viewer's
        "cutoff_passed": open_ and order.requested_ship_date == today and now >= cutoff,
    }


@dataclass(frozen=True)
class Shortage:
    """A line the order is still short of, with where the missing units could come from."""

    line: OrderLine
    missing: int
    inbound: list[dict]  # open receipts at the order's warehouse carrying the item (receipt, supplier, outstanding)
    elsewhere: dict[str, int]  # free units in other warehouses, by warehouse code

    @property
    def inbound_units(self) -> int:
        return sum(receipt["outstanding"] for receipt in self.inbound)


# Orders whose lines have been through allocation: a missing unit there is a real shortage.
SHORTAGE_STATES = [*Order.ALLOCATION_STATES, Order.Status.RELEASED, Order.Status.PICKING]


def order_shortages(order: Order, lines: list[OrderLine]) -> list[Shortage]:
    """The lines still missing units, with the stock on its way to the warehouse and free stock elsewhere
    (two queries when a line is short, none otherwise)."""
    status = order.held_from if order.status == Order.Status.ON_HOLD else order.status  # on hold: where it was
    if status not in SHORTAGE_STATES:
        return []
    short = [line for line in lines if line.status != OrderLine.Status.CANCELLED and line.missing_quantity > 0]
    if not short:
        return []
    item_ids = sorted({line.item_id for line in short})
    inbound = inventory_selectors.inbound_by_item(warehouse=order.warehouse, item_ids=item_ids)
    available = inventory_selectors.available_by_warehouse(item_ids=item_ids)
    return [
        Shortage(
            line=line,
            missing=line.missing_quantity,
            inbound=inbound.get(line.item_id, []),
            elsewhere={
                code: units for code, units in available.get(line.item_id, {}).items() if code != order.warehouse.code
            },
        )
        for line in short
    ]


def order_detail(number: str) -> dict | None:
    """Everything the order page shows, in a fixed number of queries."""
    order = (
        Order.objects.select_related("customer", "warehouse")
        .prefetch_related("warehouse__carrier_cutoffs")
        .filter(number=number)
        .first()
    )
    if order is None:
        return None
    lines = list(order.lines.select_related("item", "substitute_for").order_by("line_no"))
    reservations = list(
        Reservation.objects.filter(order_number=order.number)
        .select_related("stock_level__location", "stock_level__lot", "item")
        .order_by("pk")
    )
    line_no = {line.pk: line.line_no for line in lines}
    for reservation in reservations:
        reservation.line_no = line_no.get(reservation.order_line_id)
    tasks = list(order.tasks.select_related("location", "item", "assignee", "order_line").order_by("created_at", "pk"))
    shipments = list(
        order.shipments.prefetch_related(
            Prefetch("lines", queryset=ShipmentLine.objects.select_related("order_line__item"))
        ).order_by("pk")
    )
    return {"order": order, "lines": lines, "reservations": reservations, "tasks": tasks, "shipments": shipments}


# --- the order timeline (registered as the "orchestration" source) ----------------------

# Events whose news is already told by a status change in the order's history are left out of the timeline.
TIMELINE_EVENTS = {
    events.ORDER_LINE_CHANGED,
    events.ORDER_ADDRESS_INVALID,
    events.ORDER_BACKORDER_FILLED,
    events.ORDER_ALLOCATED,
    events.ORDER_CREDIT_HOLD,
    events.ORDER_REJECTED,
}


# What an order's history row may change besides its status, in the timeline's words.
ORDER_CHANGES = {
    "total_value": "value",
    "priority": "priority",
    "carrier": "carrier",
    "service_level": "service",
    "requested_ship_date": "ship date",
}


def _changes(before, row, fields: dict[str, str]) -> str:
    """What changed between two history rows of one thing, in words: "value 50.00 → 20.00"."""

    def shown(record, field):
        display = getattr(record, f"get_{field}_display", None)  # a field with choices says its label
        return (display() if display else getattr(record, field)) or "—"

    return "; ".join(
        f"{words} {shown(before, field)} → {shown(row, field)}"
        for field, words in fields.items()
        if getattr(before, field) != getattr(row, field)
    )


def _history_entries(
    rows, *, kind: str, label, url: str = "", changes: dict[str, str] | None = None
) -> list[TimelineEntry]:
    """One entry per history row: a creation, a status change, or another recorded change (`changes`: worth naming)."""
    entries = []
    previous: dict = {}
    for row in rows:
        before = previous.get(row.id)
        if row.history_type == "+":
            title = f"{label(row)} created ({row.get_status_display().lower()})"
        elif before is not None and before.status != row.status:
            title = f"{label(row)}: {before.get_status_display().lower()} → {row.get_status_display().lower()}"
        elif row.history_type == "-":
            title = f"{label(row)} deleted"
        elif before is None:  # rows created in bulk have no creation row: say where the first record finds them
            title = f"{label(row)} {row.get_status_display().lower()}"
        else:
            changed = _changes(before, row, changes or {})
            title = f"{label(row)}: {changed}" if changed else f"{label(row)} updated"
        entries.append(
            TimelineEntry(
                at=row.history_date,
                kind=kind,
                title=title,
                actor=row.history_actor,
                detail=row.history_reason,
                url=url,
                extra={"status": row.status},
            )
        )
        previous[row.id] = row
    return entries


def _event_title(event: DomainEvent) -> str:
    payload = event.payload or {}
    if event.name == events.ORDER_LINE_CHANGED:
        return f"Line {payload.get('line_no')} ({payload.get('sku')}) {payload.get('change', 'changed')}"
    if event.name == events.ORDER_ALLOCATED:
        short = [
            f"line {line['line_no']} short {line['shortfall']}"
            for line in payload.get("lines", [])
            if line.get("shortfall")
        ]
        outcome = str(payload.get("outcome", "")).replace("_", " ")
        return f"Allocation: {outcome}" + (f" ({', '.join(short)})" if short else "")
    if event.name == events.ORDER_CREDIT_HOLD:
        return (
            f"Credit hold: exposure {amount(payload.get('exposure'))} "
            f"against limit {amount(payload.get('credit_limit'))}"
        )
    if event.name == events.ORDER_ADDRESS_INVALID:
        return f"Ship-to address incomplete: missing {', '.join(payload.get('missing', []))}"
    if event.name == events.ORDER_BACKORDER_FILLED:
        return "Backorder filled: stock arrived"
    return event.name


def order_timeline(order: Order) -> list[TimelineEntry]:
    """The order's own story: its history, line changes, tasks, shipments and its events (5 queries)."""
    entries = _history_entries(
        order.history.order_by("history_date", "history_id"),
        kind="order",
        label=lambda row: f"Order {row.number}",
        changes=ORDER_CHANGES,
    )
    task_rows = Task.history.filter(order_id=order.pk).order_by("history_date", "history_id")
    entries += _history_entries(task_rows, kind="task", label=lambda row: f"{row.get_kind_display()} task {row.id}")
    shipment_rows = Shipment.history.filter(order_id=order.pk).order_by("history_date", "history_id")
    entries += _history_entries(shipment_rows, kind="shipment", label=lambda row: f"Shipment {row.number}")
    order_events = DomainEvent.objects.filter(
        subject_type=Order._meta.label_lower, subject_id=str(order.pk), name__in=TIMELINE_EVENTS
    ).order_by("occurred_at", "pk")
    entries += [
        TimelineEntry(
            at=event.occurred_at,
            kind="event",
            title=_event_title(event),
            actor=event.actor,
            detail=event.reason,
            extra={"event": event.name, "event_id": event.pk},
        )
        for event in order_events
    ]
    return entries


def line_progress(lines: list[OrderLine]) -> dict:
    """Units ordered, allocated, picked and shipped over the live lines of an order."""
    live = [line for line in lines if line.status != OrderLine.Status.CANCELLED]
    return {
        "ordered": sum(line.quantity for line in live),
        "allocated": sum(line.allocated_quantity for line in live),
        "picked": sum(line.picked_quantity for line in live),
        "shipped": sum(line.shipped_quantity for line in live),
    }


# --- today's carrier cutoffs --------------------------------------------------------------

# Where an order due today stands against its pickup: still to decide or allocate, in the warehouse,
# packed for the carrier, or gone.
CUTOFF_STAGES = {
    "waiting": [
        Order.Status.RECEIVED,
        Order.Status.VALIDATED,
        Order.Status.CREDIT_HOLD,
        *Order.ALLOCATION_STATES,
        Order.Status.ON_HOLD,
    ],
    "picking": [Order.Status.RELEASED, Order.Status.PICKING],
    "packed": [Order.Status.PACKED],
    "shipped": [Order.Status.SHIPPED, Order.Status.INVOICED, Order.Status.CLOSED],
}
STAGE_OF = {status: stage for stage, statuses in CUTOFF_STAGES.items() for status in statuses}
NOT_PACKED_STATES = [*CUTOFF_STAGES["waiting"], *CUTOFF_STAGES["picking"]]
NO_CARRIER = "-"  # the order list's carrier filter value for orders not booked with a carrier yet


@dataclass
class CutoffRow:
    """One carrier service at one warehouse today: its pickup and where the orders due for it stand."""

    warehouse: Warehouse
    carrier: str
    service_level: str
    cutoff: dt.datetime
    now: dt.datetime
    warning: dt.timedelta
    waiting: int = 0
    picking: int = 0
    packed: int = 0
    shipped: int = 0
    overdue: int = 0  # due on an earlier day and still not packed

    @property
    def due(self) -> int:
        return self.waiting + self.picking + self.packed + self.shipped

    @property
    def not_ready(self) -> int:
        return self.waiting + self.picking

    @property
    def minutes_left(self) -> int:
        return int((self.cutoff - self.now).total_seconds() // 60)

    @property
    def state(self) -> str:
        """missed: the pickup went with orders not packed; at_risk: inside the warning window; ok otherwise."""
        if not self.not_ready:
            return "ok"
        if self.now >= self.cutoff:
            return "missed"
        return "at_risk" if self.now >= self.cutoff - self.warning else "ok"

    @property
    def segments(self) -> list[dict]:
        """The stacked bar: each stage's share of the orders due today."""
        total = self.due or 1
        return [
            {"stage": stage, "count": getattr(self, stage), "percent": round(100 * getattr(self, stage) / total, 1)}
            for stage in ("shipped", "packed", "picking", "waiting")
        ]

    @property
    def carrier_filter(self) -> str:
        return self.carrier or NO_CARRIER

    @property
    def cutoff_label(self) -> str:
        """The pickup in the warehouse's own time."""
        return self.cutoff.strftime("%H:%M")

    @property
    def time_left_label(self) -> str:
        minutes = self.minutes_left
        if minutes < 0:
            return f"left {duration(-minutes * 60)} ago"
        return f"in {duration(minutes * 60)}"


def cutoff_board(*, now: dt.datetime | None = None, warning_minutes: int | None = None) -> list[CutoffRow]:
    """Every carrier service with orders due today (each warehouse's own today), soonest pickup first (3 queries).

    Counts orders due today by stage (shipped counts only what left today) and, apart, the open
    orders of earlier days that still are not packed.
    """
    now = now or timezone.now()
    warning = dt.timedelta(minutes=settings.CUTOFF_WARNING_MINUTES if warning_minutes is None else warning_minutes)
    warehouses = {
        warehouse.pk: warehouse
        for warehouse in Warehouse.objects.filter(is_active=True).prefetch_related("carrier_cutoffs").order_by("code")
    }
    if not warehouses:
        return []
    local = {pk: local_now(warehouse, now) for pk, warehouse in warehouses.items()}
    due_today, earlier = Q(pk__in=[]), Q(pk__in=[])
    for pk, moment in local.items():
        today, midnight = moment.date(), moment.replace(hour=0, minute=0, second=0, microsecond=0)
        due_today |= Q(warehouse_id=pk, requested_ship_date=today) & (
            ~Q(status__in=CUTOFF_STAGES["shipped"]) | Q(shipped_at__gte=midnight)
        )
        earlier |= Q(warehouse_id=pk, requested_ship_date__lt=today)
    counts = (
        Order.objects.filter(due_today | (earlier & Q(status__in=NOT_PACKED_STATES)))
        .filter(status__in=STAGE_OF)
        .values("warehouse_id", "carrier", "service_level", "status")
        .annotate(today=Count("pk", filter=due_today), overdue=Count("pk", filter=earlier))
        .order_by()
    )
    rows: dict[tuple, CutoffRow] = {}
    for count in counts:
        key = (count["warehouse_id"], count["carrier"], count["service_level"])
        row = rows.get(key)
        if row is None:
            warehouse = warehouses[count["warehouse_id"]]
            row = rows[key] = CutoffRow(
                warehouse=warehouse,
                carrier=count["carrier"],
                service_level=count["service_level"],
                cutoff=pickup_cutoff(
                    warehouse, carrier=count["carrier"], service_level=count["service_level"], now=now
                ),
                now=local[warehouse.pk],
                warning=warning,
            )
        stage = STAGE_OF[count["status"]]
        setattr(row, stage, getattr(row, stage) + count["today"])
        row.overdue += count["overdue"]
    return sorted(rows.values(), key=lambda row: (row.cutoff, row.warehouse.code, row.carrier, row.service_level))


# --- the floor: open work per zone and what was finished lately ------------------------------

FLOOR_HOURS = 8
STALE_TASK_MINUTES = 60
PRIORITY_LABELS = dict(Order.Priority.choices)  # a task carries its order's priority

# The task list's state filter: groups a supervisor asks about, each a set of task statuses.
TASK_STATES = {
    "open": Task.OPEN_STATES,
    "waiting": [Task.Status.CREATED],
    "handed_out": [Task.Status.DISPATCHED, Task.Status.ACKNOWLEDGED],
    "in_progress": [Task.Status.IN_PROGRESS],
    "short": [Task.Status.SHORT],
    "failed": [Task.Status.FAILED],
    "finished": Task.DONE_STATES,
}
OPEN_TASK_STAGES = ("waiting", "handed_out", "in_progress")  # how the floor splits open work


@dataclass
class ZoneWork:
    """Open tasks in one zone: how many wait for someone, are handed out, are being worked, and the oldest."""

    zone: str
    waiting: int = 0
    handed_out: int = 0
    in_progress: int = 0
    oldest_minutes: int | None = None

    @property
    def open(self) -> int:
        return self.waiting + self.handed_out + self.in_progress

    @property
    def oldest_label(self) -> str:
        return "—" if self.oldest_minutes is None else duration(self.oldest_minutes * 60)

    @property
    def stale(self) -> bool:
        """Work has waited in this zone longer than a wave should take."""
        return self.oldest_minutes is not None and self.oldest_minutes >= STALE_TASK_MINUTES


@dataclass
class FloorActivity:
    """One warehouse's floor: open work per zone and finished tasks per hour for the last FLOOR_HOURS hours."""

    warehouse: object
    zones: list[ZoneWork]
    hours: list[dict]  # oldest first: {"start", "label", "completed", "short", "units"}

    @property
    def open(self) -> int:
        return sum(zone.open for zone in self.zones)

    @property
    def last_hour(self) -> dict:
        return self.hours[-1]

    @property
    def peak(self) -> int:
        return max([hour["completed"] + hour["short"] for hour in self.hours] + [1])


def floor_activity(*, now: dt.datetime | None = None, hours: int = FLOOR_HOURS) -> list[FloorActivity]:
    """Per active warehouse: open tasks by zone (with the oldest) and tasks finished per hour (3 queries)."""
    now = now or timezone.now()
    warehouses = {warehouse.pk: warehouse for warehouse in Warehouse.objects.filter(is_active=True).order_by("code")}
    if not warehouses:
        return []
    stage = {status: name for name in OPEN_TASK_STAGES for status in TASK_STATES[name]}
    zones: dict[int, dict[str, ZoneWork]] = {pk: {} for pk in warehouses}
    open_work = (
        Task.objects.filter(warehouse_id__in=warehouses, status__in=stage)
        .values("warehouse_id", "zone", "status")
        .annotate(tasks=Count("pk"), oldest=Min("created_at"))
        .order_by()
    )
    for row in open_work:
        zone = zones[row["warehouse_id"]].setdefault(row["zone"], ZoneWork(zone=row["zone"]))
        field = stage[row["status"]]
        setattr(zone, field, getattr(zone, field) + row["tasks"])
        zone.oldest_minutes = max(zone.oldest_minutes or 0, waited_minutes(row["oldest"], now))

    this_hour = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
    starts = [this_hour - dt.timedelta(hours=back) for back in range(hours - 1, -1, -1)]
    finished = (
        Task.objects.filter(
            warehouse_id__in=warehouses,
            finished_at__gte=starts[0],
            status__in=[Task.Status.COMPLETED, Task.Status.SHORT],
        )
        .annotate(hour=TruncHour("finished_at", tzinfo=dt.UTC))
        .values("warehouse_id", "hour", "status")
        .annotate(tasks=Count("pk"), units=Sum("done_quantity"))
        .order_by()
    )
    per_hour: dict[tuple, dict] = {}
    for row in finished:
        bucket = per_hour.setdefault((row["warehouse_id"], row["hour"]), {"completed": 0, "short": 0, "units": 0})
        bucket[row["status"]] += row["tasks"]
        bucket["units"] += row["units"] or 0
    activity = []
    for pk, warehouse in warehouses.items():
        series = []
        for start in starts:
            counts = per_hour.get((pk, start), {"completed": 0, "short": 0, "units": 0})
            series.append({"start": start, "label": local_now(warehouse, start).strftime("%H:%M"), **counts})
        activity.append(
            FloorActivity(
                warehouse=warehouse,
                zones=sorted(zones[pk].values(), key=lambda zone: (-zone.open, zone.zone)),
                hours=series,
            )
        )
    return activity


# --- the task list --------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskFilters:
    warehouse: str = ""
    zone: str = ""
    state: str = "open"  # a key of TASK_STATES, or "" for every task
    kind: str = ""


def waited_minutes(since: dt.datetime, now: dt.datetime) -> int:
    return max(0, int((now - since).total_seconds() // 60))


def task_rows(tasks, now: dt.datetime | None = None) -> list[Task]:
    """A page of tasks with what the list shows beside each: tone, priority label, and whether open work is stale."""
    now = now or timezone.now()
    rows = list(tasks)
    for task in rows:
        task.tone = TASK_TONE.get(task.status, "")
        task.priority_label = PRIORITY_LABELS.get(task.priority, task.priority)
        task.stale = task.status in Task.OPEN_STATES and waited_minutes(task.created_at, now) >= STALE_TASK_MINUTES
    return rows


def task_list(filters: TaskFilters) -> QuerySet[Task]:
    """Tasks for the list page, the longest waiting first (open work) or the latest first (finished), 2 queries a page."""
    tasks = Task.objects.select_related("warehouse", "location", "to_location", "item", "order")
    if filters.warehouse:
        tasks = tasks.filter(warehouse__code=filters.warehouse)
    if filters.zone:
        tasks = tasks.filter(zone=filters.zone)
    if filters.state in TASK_STATES:
        tasks = tasks.filter(status__in=TASK_STATES[filters.state])
    if filters.kind:
        tasks = tasks.filter(kind=filters.kind)
    finished = filters.state in ("short", "failed", "finished")
    return tasks.order_by("-finished_at", "-pk") if finished else tasks.order_by("created_at", "pk")


# --- shipments ---------------------------------------------------------------------------

# The shipments page's state filter: packed and waiting for the carrier, collected, delivered.
SHIPMENT_STATES = {
    "waiting": [Shipment.Status.PACKED],
    "shipped": [Shipment.Status.SHIPPED],
    "confirmed": [Shipment.Status.CONFIRMED],
}


@dataclass(frozen=True)
class ShipmentFilters:
    warehouse: str = ""
    carrier: str = ""  # a carrier, or NO_CARRIER
    state: str = "waiting"  # a key of SHIPMENT_STATES, or "" for every shipment
    search: str = ""  # shipment number, order number or tracking number


def shipment_list(filters: ShipmentFilters) -> QuerySet[Shipment]:
    """Shipments for the shipments page with their units: waiting ones the longest packed first, others the
    latest shipped first (three queries a page: the count, the rows, their warehouses' pickup times)."""
    shipments = (
        Shipment.objects.select_related("warehouse", "order__customer")
        .prefetch_related("warehouse__carrier_cutoffs")
        .annotate(units=Sum("lines__quantity"))
    )
    if filters.warehouse:
        shipments = shipments.filter(warehouse__code=filters.warehouse)
    if filters.carrier:
        shipments = shipments.filter(carrier="" if filters.carrier == NO_CARRIER else filters.carrier)
    if filters.state in SHIPMENT_STATES:
        shipments = shipments.filter(status__in=SHIPMENT_STATES[filters.state])
    if filters.search:
        shipments = shipments.filter(
            Q(number__icontains=filters.search)
            | Q(order__number__icontains=filters.search)
            | Q(tracking_number__icontains=filters.search)
        )
    if filters.state == "waiting":
        return shipments.order_by("created_at", "pk")
    return shipments.order_by(F("shipped_at").desc(nulls_first=True), "-pk")


def shipment_rows(shipments, now: dt.datetime | None = None) -> list[Shipment]:
    """A page of shipments with, beside each one still on the dock, the pickup it waits for on the warehouse's
    clock (a later day's when its order ships later) and whether a pickup it was due on left without it."""
    now = now or timezone.now()
    rows = list(shipments)
    for shipment in rows:
        shipment.pickup = None
        shipment.missed_pickup = False
        if shipment.status == Shipment.Status.PACKED:
            cutoff = pickup_cutoff(
                shipment.warehouse, carrier=shipment.carrier, service_level=shipment.service_level, now=now
            )
            ships_on = shipment.order.requested_ship_date
            if ships_on and ships_on > cutoff.date():
                shipment.pickup = f"{ships_on:%a} {cutoff:%H:%M}"
            else:
                shipment.pickup = cutoff.strftime("%H:%M")
                shipment.missed_pickup = now > cutoff
            shipment.waiting_minutes = waited_minutes(shipment.created_at, now)
    return rows


# --- customers and their credit ----------------------------------------------------------

# Who may open the customer pages: the credit standing is finance's, the questions about it customer service's.
CREDIT_ROLES = (Role.FINANCE, Role.CUSTOMER_SERVICE, Role.OPERATIONS_ADMIN)
NEAR_LIMIT_PERCENT = 80  # a customer using this much of their limit or more needs a look
CUSTOMER_FOCUS = {"attention": "needing a look", "all": "all customers"}
CUSTOMER_ROWS = 25  # held and recent orders, and credit changes, shown on a customer's page


def customer_credit_list(*, search: str = "", focus: str = "attention") -> QuerySet:
    """Customers with their credit exposure and orders on credit hold, the most of their limit used first (one query).

    Exposure is the open balance plus the value of orders not yet invoiced (as the credit check counts it).
    `focus` "attention": blocked or watched, holding orders on credit hold, or at NEAR_LIMIT_PERCENT of the limit.
    """
    # Joined to the orders still counting (through the status index), not to every order ever placed.
    counting = FilteredRelation(
        "orders", condition=Q(orders__status__in=[*Order.CREDIT_EXPOSURE_STATES, Order.Status.CREDIT_HOLD])
    )
    rows = (
        Customer.objects.annotate(open_orders=counting)
        .annotate(
            in_flight=Coalesce(
                Sum("open_orders__total_value", filter=Q(open_orders__status__in=Order.CREDIT_EXPOSURE_STATES)),
                Value(Decimal("0")),
            ),
            held_count=Count("open_orders", filter=Q(open_orders__status=Order.Status.CREDIT_HOLD)),
            held_value=Coalesce(
                Sum("open_orders__total_value", filter=Q(open_orders__status=Order.Status.CREDIT_HOLD)),
                Value(Decimal("0")),
            ),
        )
        .annotate(
            exposure=F("open_balance") + F("in_flight"),
            # No limit set: any exposure counts as over it.
            used_percent=Coalesce(
                (F("open_balance") + F("in_flight"))
                * Value(Decimal("100"))
                / NullIf(F("credit_limit"), Value(Decimal("0"))),
                DbCase(
                    When(Q(open_balance__gt=0) | Q(in_flight__gt=0), then=Value(Decimal("999"))),
                    default=Value(Decimal("0")),
                ),
                output_field=DecimalField(max_digits=20, decimal_places=2),
            ),
        )
    )
    if search:
        rows = rows.filter(Q(code__icontains=search) | Q(name__icontains=search))
    if focus == "attention":
        rows = rows.filter(
            Q(credit_status__in=[Customer.CreditStatus.WATCH, Customer.CreditStatus.BLOCKED])
            | Q(held_count__gt=0)
            | Q(used_percent__gte=NEAR_LIMIT_PERCENT)
        )
    return rows.order_by("-used_percent", "-held_value", "code")


@dataclass
class CustomerAccount:
    customer: Customer
    in_flight: list[dict]  # value not yet invoiced, by order status
    in_flight_total: Decimal
    exposure: Decimal
    headroom: Decimal
    held: list  # orders on credit hold, oldest first (the first CUSTOMER_ROWS)
    held_count: int
    held_value: Decimal
    exposure_if_released: Decimal  # the exposure once every held order goes ahead
    recent: list  # the latest orders, any status
    changes: list  # credit limit, balance and status changes (history rows), newest first
    bar: dict  # shares of the bar scale (percent): balance, in flight, held, and where the limit falls


def customer_account(customer: Customer) -> CustomerAccount:
    """A customer's credit: what counts against the limit and why, the orders held for it, the latest orders and
    who changed the terms (five queries)."""
    in_flight = list(
        customer.orders.filter(status__in=Order.CREDIT_EXPOSURE_STATES)
        .values("status")
        .annotate(orders=Count("id"), value=Sum("total_value"))
        .order_by("status")
    )
    order_of = {status: index for index, status in enumerate(Order.CREDIT_EXPOSURE_STATES)}
    in_flight.sort(key=lambda row: order_of[row["status"]])
    for row in in_flight:
        row["label"] = Order.Status(row["status"]).label
    in_flight_total = sum((row["value"] for row in in_flight), Decimal("0"))
    held = list(
        customer.orders.filter(status=Order.Status.CREDIT_HOLD)
        .select_related("warehouse")
        .order_by("created_at", "pk")[:CUSTOMER_ROWS]
    )
    held_totals = customer.orders.filter(status=Order.Status.CREDIT_HOLD).aggregate(n=Count("id"), v=Sum("total_value"))
    held_value = held_totals["v"] or Decimal("0")
    recent = list(customer.orders.select_related("warehouse").order_by("-created_at", "-pk")[:CUSTOMER_ROWS])
    for order in recent:
        order.tone = STATUS_TONE.get(order.status, "")
    history = list(customer.history.order_by("-history_date", "-history_id")[: CUSTOMER_ROWS + 1])
    changes = [
        {
            "at": row.history_date,
            "actor": row.history_actor,
            "reason": row.history_reason,
            "what": _credit_terms_changed(row, previous),
        }
        for row, previous in zip(history, [*history[1:], None], strict=True)
    ][:CUSTOMER_ROWS]
    exposure = customer.open_balance + in_flight_total
    scale = max(customer.credit_limit, exposure + held_value) or Decimal("1")
    return CustomerAccount(
        customer=customer,
        in_flight=in_flight,
        in_flight_total=in_flight_total,
        exposure=exposure,
        headroom=customer.credit_limit - exposure,
        held=held,
        held_count=held_totals["n"],
        held_value=held_value,
        exposure_if_released=exposure + held_value,
        recent=recent,
        changes=[change for change in changes if change["what"]],
        bar={
            "balance": _share(customer.open_balance, scale),
            "in_flight": _share(in_flight_total, scale),
            "held": _share(held_value, scale),
            "limit": _share(customer.credit_limit, scale),
        },
    )


def _share(amount: Decimal, scale: Decimal) -> float:
    return round(float(max(amount, Decimal("0")) * 100 / scale), 2)


CREDIT_TERMS = [
    ("credit_limit", "credit limit"),
    ("open_balance", "open balance"),
    ("credit_status", "credit status"),
]


def _credit_terms_changed(row, previous) -> str:
    """What a history row changed of the credit terms, in words ("" when it changed none of them)."""
    if previous is None:  # the account's first record, or the oldest row read
        if row.history_type != "+":
            return ""
        return f"account opened: limit {row.credit_limit}, credit {row.get_credit_status_display().lower()}"
    changed = []
    for field, label in CREDIT_TERMS:
        before, after = getattr(previous, field), getattr(row, field)
        if before != after:
            if field == "credit_status":
                before, after = previous.get_credit_status_display().lower(), row.get_credit_status_display().lower()
            changed.append(f"{label} {before} → {after}")
    return "; ".join(changed)
