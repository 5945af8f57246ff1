"""Reads of exception queues shared by the portal pages, the live updates and the API.

Every function here issues a fixed number of queries whatever the page size. Queue lists
page with a keyset cursor over an indexed ordering (no OFFSET scans deep into 100,000 open
cases), and counts are cached under the queue's change sequence, so a count is recomputed
only after the queue changed (or a minute later, for filters that depend on the clock).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Case as DbCase
from django.db.models import Count, F, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from exceptions.models import Case, CaseComment, CaseEscalation, ExceptionType, Queue, QueueChange, Severity
from portal.domain import NotFound, PermissionRefused
from portal.roles import GROUP_NAME_TO_ROLE, Role, working_roles

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_CHANGES = 500
COUNT_CACHE_SECONDS = 60

# Age since the case was raised: (key, label, from, to). The home chart and the age filter use the same buckets.
AGE_BUCKETS = [
    ("lt1h", "< 1 h", dt.timedelta(0), dt.timedelta(hours=1)),
    ("1to4h", "1–4 h", dt.timedelta(hours=1), dt.timedelta(hours=4)),
    ("4to24h", "4–24 h", dt.timedelta(hours=4), dt.timedelta(hours=24)),
    ("gt24h", "> 24 h", dt.timedelta(hours=24), None),
]
AGE_KEYS = [bucket[0] for bucket in AGE_BUCKETS]
SLA_STATES = [choice for choice, _ in Case.SlaState.choices]


# --- access ----------------------------------------------------------------------------


def queue_roles(user) -> set[str]:
    return {role.value for role in working_roles(user)}


def queues_for_user(user) -> list[Queue]:
    """The queues of the roles `user` holds (none for a user without a queue role)."""
    roles = queue_roles(user)
    if not roles:
        return []
    return list(Queue.objects.filter(role__in=roles).order_by("name"))


def can_work_queue(user, queue: Queue) -> bool:
    return queue.role in queue_roles(user)


def queue_for_user(user, code: str) -> Queue:
    """The queue called `code` if `user` holds its role; NotFound / PermissionRefused otherwise."""
    queue = Queue.objects.filter(code=code).first()
    if queue is None:
        raise NotFound(f"There is no queue called “{code}”. Pick one of your queues from the home page.")
    if not can_work_queue(user, queue):
        raise PermissionRefused(
            f"The {queue.name} queue belongs to the {Role(queue.role).label} role, which you do not hold. "
            "Ask an operations admin to add you to that role if you should work it."
        )
    return queue


def case_for_user(user, pk) -> Case:
    """Case `pk` if it sits in a queue of one of `user`'s roles; NotFound / PermissionRefused otherwise."""
    case = (
        Case.objects.select_related("type", "queue", "warehouse", "assignee", "sla_policy", "routed_by")
        .filter(pk=pk)
        .first()
    )
    if case is None:
        raise NotFound(f"Case #{pk} does not exist. It may have been mistyped; search the queue instead.")
    if not can_work_queue(user, case.queue):
        raise PermissionRefused(
            f"Case #{case.pk} is in the {case.queue.name} queue, which belongs to another role. "
            "Ask a colleague in that role, or an operations admin, if you need it."
        )
    return case


SUBJECT_CASES_SHOWN = 20


def cases_about(subject, *, viewer, limit: int = SUBJECT_CASES_SHOWN) -> list[dict]:
    """The latest cases about `subject` (any record), open ones first (one query).

    Each row is the case with ``url`` set only when `viewer` works its queue, so a page can list
    every case about its record without offering links that would be refused.
    """
    subject_type, subject_id = subject._meta.label_lower, str(subject.pk)
    cases = (
        Case.objects.filter(subject_type=subject_type, subject_id=subject_id)
        .select_related("type", "queue", "assignee")
        .annotate(closed=DbCase(When(status__in=Case.ACTIVE_STATES, then=Value(0)), default=Value(1)))
        .order_by("closed", "-created_at", "-pk")[:limit]
    )
    roles = queue_roles(viewer)
    return [{"case": case, "url": case.get_absolute_url() if case.queue.role in roles else ""} for case in cases]


def subjects_with_active_case(*, type_code: str, subject_type: str, subject_ids) -> set[str]:
    """Which of these subjects already have an active case of the type (one query)."""
    return set(
        Case.objects.active()
        .filter(type__code=type_code, subject_type=subject_type, subject_id__in=[str(pk) for pk in subject_ids])
        .values_list("subject_id", flat=True)
    )


def queue_members(queue: Queue) -> list:
    """The active users holding the queue's role: who a case can be assigned to."""
    role = Role(queue.role)
    group_names = [name for name, value in GROUP_NAME_TO_ROLE.items() if value == role]
    return list(
        get_user_model()
        .objects.filter(is_active=True, groups__name__in=group_names)
        .distinct()
        .order_by("username")
        .only("pk", "username", "first_name", "last_name")
    )


# --- SLA state as people see it ---------------------------------------------------------


def sla_state(case: Case, now: dt.datetime) -> str:
    """Paused while waiting on an external party; breached once the resolution time passed; at risk from
    ``at_risk_at`` on; the beat job records the same states, this reads them without waiting for its tick."""
    if case.paused_at is not None:
        return Case.SlaState.PAUSED
    if (
        case.sla_state == Case.SlaState.BREACHED
        or (case.resolution_due_at and case.resolution_due_at <= now)
        or (case.first_responded_at is None and case.first_response_due_at and case.first_response_due_at <= now)
    ):
        return Case.SlaState.BREACHED
    if case.sla_state == Case.SlaState.AT_RISK or (case.at_risk_at and case.at_risk_at <= now):
        return Case.SlaState.AT_RISK
    return Case.SlaState.OK


def _paused_q() -> Q:
    return Q(paused_at__isnull=False)


def _breached_q(now) -> Q:
    late_answer = Q(first_responded_at__isnull=True, first_response_due_at__lte=now)
    return ~_paused_q() & (Q(sla_state=Case.SlaState.BREACHED) | Q(resolution_due_at__lte=now) | late_answer)


def _at_risk_q(now) -> Q:
    return ~_paused_q() & (Q(sla_state=Case.SlaState.AT_RISK) | Q(at_risk_at__lte=now)) & ~_breached_q(now)


def sla_q(state: str, now) -> Q:
    if state == Case.SlaState.PAUSED:
        return _paused_q()
    if state == Case.SlaState.BREACHED:
        return _breached_q(now)
    if state == Case.SlaState.AT_RISK:
        return _at_risk_q(now)
    return ~_paused_q() & ~_breached_q(now) & ~(Q(sla_state=Case.SlaState.AT_RISK) | Q(at_risk_at__lte=now))


def age_q(key: str, now) -> Q:
    for bucket_key, _, start, end in AGE_BUCKETS:
        if bucket_key == key:
            condition = Q(created_at__lte=now - start) if start else Q()  # the newest bucket has no lower bound
            if end is not None:
                condition &= Q(created_at__gt=now - end)
            return condition
    return Q()


# --- filters and sorting -----------------------------------------------------------------


@dataclass(frozen=True)
class Sort:
    key: str
    label: str
    columns: tuple[tuple[str, bool, bool], ...]  # (field, descending, nullable); nulls always last


SORTS = {
    sort.key: sort
    for sort in [
        Sort("due", "Due soonest", (("resolution_due_at", False, True), ("id", False, False))),
        Sort("-due", "Due latest", (("resolution_due_at", True, True), ("id", True, False))),
        Sort(
            "-priority",
            "Most urgent",
            (("priority", True, False), ("resolution_due_at", False, True), ("id", False, False)),
        ),
        Sort("raised", "Oldest first", (("created_at", False, False), ("id", False, False))),
        Sort("-raised", "Newest first", (("created_at", True, False), ("id", True, False))),
    ]
}
DEFAULT_SORT = "due"


@dataclass
class QueueFilters:
    """What a queue page or the API asked for, validated; `errors` names each value that was ignored."""

    type: str = ""
    severity: str = ""
    warehouse: str = ""
    sla: str = ""
    assignee: str = ""  # "me", "none" or a user id
    age: str = ""
    sort: str = DEFAULT_SORT
    page_size: int = DEFAULT_PAGE_SIZE
    after: str = ""
    before: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    FILTER_KEYS = ("type", "severity", "warehouse", "sla", "assignee", "age")

    @classmethod
    def from_params(cls, params) -> QueueFilters:
        """Read filters from a QueryDict; unknown values are dropped with a message saying what to pick instead."""
        values = cls()
        errors: dict[str, str] = {}
        text = {key: (params.get(key) or "").strip()[:64] for key in (*cls.FILTER_KEYS, "sort", "after", "before")}
        values.type = text["type"]
        values.warehouse = text["warehouse"]
        if text["severity"] in Severity.values or not text["severity"]:
            values.severity = text["severity"]
        else:
            errors["severity"] = f"Unknown severity “{text['severity']}”; choose one of {', '.join(Severity.values)}."
        if text["sla"] in SLA_STATES or not text["sla"]:
            values.sla = text["sla"]
        else:
            errors["sla"] = f"Unknown SLA state “{text['sla']}”; choose one of {', '.join(SLA_STATES)}."
        if text["age"] in AGE_KEYS or not text["age"]:
            values.age = text["age"]
        else:
            errors["age"] = f"Unknown age bucket “{text['age']}”; choose one of {', '.join(AGE_KEYS)}."
        if text["assignee"] in ("", "me", "none") or text["assignee"].isdigit():
            values.assignee = text["assignee"]
        else:
            errors["assignee"] = "Choose an assignee from the list, “me” or “none”."
        if text["sort"] in SORTS or not text["sort"]:
            values.sort = text["sort"] or DEFAULT_SORT
        else:
            errors["sort"] = f"Unknown sort “{text['sort']}”; choose one of {', '.join(SORTS)}."
        raw_size = (params.get("page_size") or params.get("limit") or "").strip()
        if raw_size:
            if raw_size.isdigit() and 1 <= int(raw_size) <= MAX_PAGE_SIZE:
                values.page_size = int(raw_size)
            else:
                errors["page_size"] = f"Page size must be a whole number from 1 to {MAX_PAGE_SIZE}."
        for key in ("after", "before"):
            if text[key] and _decode_cursor(params.get(key, "")) is None:
                errors[key] = "That page link is no longer valid; showing the first page."
            elif text[key]:
                setattr(values, key, params.get(key, ""))
        values.errors = errors
        return values

    def active(self) -> dict[str, str]:
        """The filters in effect, for links and for the live row requests."""
        return {key: getattr(self, key) for key in self.FILTER_KEYS if getattr(self, key)}

    def query_string(self, **overrides) -> str:
        from django.utils.http import urlencode

        values: dict[str, Any] = {**self.active(), "sort": self.sort}
        if self.page_size != DEFAULT_PAGE_SIZE:
            values["page_size"] = self.page_size
        values.update(overrides)
        return urlencode({key: value for key, value in values.items() if value not in ("", None)})

    def depends_on_clock(self) -> bool:
        return bool(self.sla or self.age)


def filtered_cases(queue: Queue, filters: QueueFilters, *, user, now) -> QuerySet:
    """The active cases of `queue` matching `filters` (unordered)."""
    cases = Case.objects.filter(queue=queue, status__in=Case.ACTIVE_STATES)
    if filters.type:
        cases = cases.filter(type__code=filters.type)
    if filters.severity:
        cases = cases.filter(severity=filters.severity)
    if filters.warehouse:
        cases = cases.filter(warehouse__code=filters.warehouse)
    if filters.sla:
        cases = cases.filter(sla_q(filters.sla, now))
    if filters.age:
        cases = cases.filter(age_q(filters.age, now))
    if filters.assignee == "me":
        cases = cases.filter(assignee_id=user.pk)
    elif filters.assignee == "none":
        cases = cases.filter(assignee__isnull=True)
    elif filters.assignee:
        cases = cases.filter(assignee_id=int(filters.assignee))
    return cases


# --- keyset cursors ----------------------------------------------------------------------


def _encode_cursor(values: list) -> str:
    raw = json.dumps([value.isoformat() if isinstance(value, dt.datetime) else value for value in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(token: str) -> list | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(values, list) or not values or not all(isinstance(v, (int, str, type(None))) for v in values):
        return None
    return values


def _cursor_values(case: Case, sort: Sort) -> list:
    return [getattr(case, column) for column, _, _ in sort.columns]


def _typed(column: str, value):
    if value is None or column not in ("resolution_due_at", "created_at"):
        return value
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise ValueError("bad cursor")
    return parsed


def _after_q(sort: Sort, values: list, *, backwards: bool) -> Q:
    """Rows strictly after `values` in `sort` order (or strictly before when `backwards`); nulls sort last."""
    if len(values) != len(sort.columns):
        raise ValueError("bad cursor")
    condition = Q(pk__in=[])
    equal_so_far = Q()
    for (column, descending, nullable), raw in zip(sort.columns, values, strict=True):
        value = _typed(column, raw)
        if value is None:
            beyond = Q(**{f"{column}__isnull": False}) if backwards else Q(pk__in=[])
            equal = Q(**{f"{column}__isnull": True})
        else:
            forward_lookup = "lt" if descending else "gt"
            backward_lookup = "gt" if descending else "lt"
            beyond = Q(**{f"{column}__{backward_lookup if backwards else forward_lookup}": value})
            if nullable and not backwards:
                beyond |= Q(**{f"{column}__isnull": True})
            equal = Q(**{column: value})
        condition |= equal_so_far & beyond
        equal_so_far &= equal
    return condition


def _order_by(sort: Sort, *, backwards: bool) -> list:
    """The SQL ordering of `sort` (nulls last), or its exact reverse (nulls first) to page backwards.

    Columns that cannot be null get no NULLS clause, so the ordering matches the queue indexes exactly.
    """

    order = []
    for column, descending, nullable in sort.columns:
        descending = descending != backwards
        nulls = ({"nulls_first": True} if backwards else {"nulls_last": True}) if nullable else {}
        order.append(F(column).desc(**nulls) if descending else F(column).asc(**nulls))
    return order


def sort_key(case: Case, sort_name: str) -> str:
    """A string that sorts like the page's SQL ordering, so the live script can insert a row in place."""
    sort = SORTS.get(sort_name, SORTS[DEFAULT_SORT])
    parts = []
    for column, descending, _ in sort.columns:
        value = getattr(case, column)
        if value is None:
            parts.append("~" * 16)
            continue
        number = int(value.timestamp() * 1000) if isinstance(value, dt.datetime) else int(value)
        if descending:
            number = 10**15 - number
        parts.append(f"{number:016d}")
    return ".".join(parts)


# --- the queue page -----------------------------------------------------------------------


@dataclass
class QueuePage:
    queue: Queue
    filters: QueueFilters
    rows: list[Case]
    total: int
    next_cursor: str
    previous_cursor: str
    last_seq: int
    now: dt.datetime


def _cache_key(*parts) -> str:
    digest = hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()[:20]
    return f"exceptions:{settings.DATABASES['default']['NAME']}:{digest}"


def _cached(key: str, compute):
    """`compute()` once per key: a request that finds another computing the same figures waits for its result.

    After a queue change every open page asks for the new counts at about the same moment; without
    this each would scan the queue.
    """
    value = cache.get(key)
    if value is not None:
        return value
    if not cache.add(f"{key}:computing", 1, 5):
        for _ in range(20):
            time.sleep(0.025)
            value = cache.get(key)
            if value is not None:
                return value
    try:
        value = compute()
        cache.set(key, value, COUNT_CACHE_SECONDS)
    finally:
        cache.delete(f"{key}:computing")
    return value


def queue_count(queue: Queue, filters: QueueFilters, *, user, now) -> int:
    """How many active cases match; cached until the queue changes (or the minute turns, for clock filters)."""
    minute = now.replace(second=0, microsecond=0).isoformat() if filters.depends_on_clock() else ""
    assignee = user.pk if filters.assignee == "me" else ""
    key = _cache_key("count", queue.pk, queue.last_seq, sorted(filters.active().items()), minute, assignee)
    return _cached(key, lambda: filtered_cases(queue, filters, user=user, now=now).count())


def queue_page(queue: Queue, filters: QueueFilters, *, user, now=None) -> QueuePage:
    """One page of a queue's active cases: 1 query for the rows, at most 1 for the (cached) count."""
    now = now or timezone.now()
    sort = SORTS[filters.sort]
    cases = filtered_cases(queue, filters, user=user, now=now).select_related("type", "warehouse", "assignee")
    backwards = bool(filters.before) and not filters.after
    cursor = (
        _decode_cursor(filters.before if backwards else filters.after) if (filters.after or filters.before) else None
    )
    if cursor is not None:
        try:
            cases = cases.filter(_after_q(sort, cursor, backwards=backwards))
        except ValueError:
            filters.errors["after"] = "That page link is no longer valid; showing the first page."
            backwards = False
    rows = list(cases.order_by(*_order_by(sort, backwards=backwards))[: filters.page_size + 1])
    more = len(rows) > filters.page_size
    rows = rows[: filters.page_size]
    if backwards:
        rows.reverse()
    has_next = more if not backwards else True
    has_previous = (more if backwards else cursor is not None) and bool(rows)
    return QueuePage(
        queue=queue,
        filters=filters,
        rows=rows,
        total=queue_count(queue, filters, user=user, now=now),
        next_cursor=_encode_cursor(_cursor_values(rows[-1], sort)) if rows and has_next else "",
        previous_cursor=_encode_cursor(_cursor_values(rows[0], sort)) if rows and has_previous else "",
        last_seq=queue.last_seq,
        now=now,
    )


def queue_rows(queue: Queue, case_ids: list[int], filters: QueueFilters, *, user, now=None) -> dict[int, Case | None]:
    """The given cases as they stand now if they still belong on this filtered queue page, else None (1 query)."""
    now = now or timezone.now()
    found = {
        case.pk: case
        for case in filtered_cases(queue, filters, user=user, now=now)
        .filter(pk__in=case_ids)
        .select_related("type", "warehouse", "assignee")
    }
    return {case_id: found.get(case_id) for case_id in case_ids}


def filter_choices(queue: Queue) -> dict:
    """The values the filter controls offer (3 small queries)."""
    from inventory.models import Warehouse

    return {
        "types": list(ExceptionType.objects.filter(enabled=True).order_by("name").values_list("code", "name")),
        "severities": Severity.choices,
        "warehouses": list(Warehouse.objects.filter(is_active=True).order_by("code").values_list("code", "name")),
        "sla_states": Case.SlaState.choices,
        "ages": [(key, label) for key, label, _, _ in AGE_BUCKETS],
        "members": queue_members(queue),
        "sorts": [(sort.key, sort.label) for sort in SORTS.values()],
    }


# --- live changes -------------------------------------------------------------------------


def queue_changes_since(queue: Queue, seq: int, limit: int = MAX_CHANGES) -> list[QueueChange]:
    """The queue's changes numbered after `seq`, oldest first, at most `limit` (1 query)."""
    limit = max(1, min(int(limit), MAX_CHANGES))
    return list(QueueChange.objects.filter(queue=queue, seq__gt=seq).order_by("seq")[:limit])


def queue_changes_payload(queue: Queue, seq: int, limit: int = MAX_CHANGES) -> dict:
    """What a live client missed after `seq`: the changes in order and whether more follow (1 query)."""
    changes = queue_changes_since(queue, seq, limit)
    return {
        "queue": queue.code,
        "last_seq": queue.last_seq,
        "changes": [
            {"seq": c.seq, "case_id": c.case_id, "kind": c.kind, "status": c.status, "at": c.at} for c in changes
        ],
        "has_more": bool(changes) and changes[-1].seq < queue.last_seq,
    }


# --- the role home ------------------------------------------------------------------------


def queue_summaries(queues: list[Queue], *, now=None) -> list[dict]:
    """Per queue: open, breached and at-risk counts and the aging buckets (1 grouped query, cached per change)."""
    now = now or timezone.now()
    if not queues:
        return []
    minute = now.replace(second=0, microsecond=0)
    key = _cache_key("summary", [(queue.pk, queue.last_seq) for queue in queues], minute.isoformat())

    def compute() -> dict:
        aggregates = {
            "open": Count("id"),
            "breached": Count("id", filter=_breached_q(minute)),
            "at_risk": Count("id", filter=_at_risk_q(minute)),
            "paused": Count("id", filter=_paused_q()),
            "unassigned": Count("id", filter=Q(assignee__isnull=True)),
        }
        for bucket_key, *_ in AGE_BUCKETS:
            aggregates[f"age_{bucket_key}"] = Count("id", filter=age_q(bucket_key, minute))
        rows = (
            Case.objects.filter(queue__in=[queue.pk for queue in queues], status__in=Case.ACTIVE_STATES)
            .values("queue_id")
            .annotate(**aggregates)
            .order_by()
        )
        return {row["queue_id"]: row for row in rows}

    by_queue = _cached(key, compute)
    summaries = []
    for queue in queues:
        row = by_queue.get(queue.pk, {})
        ages = [
            {"key": bucket_key, "label": label, "count": row.get(f"age_{bucket_key}", 0)}
            for bucket_key, label, _, _ in AGE_BUCKETS
        ]
        biggest = max([age["count"] for age in ages] + [1])
        for age in ages:
            age["percent"] = round(100 * age["count"] / biggest)
        summaries.append(
            {
                "queue": queue,
                "code": queue.code,
                "name": queue.name,
                "last_seq": queue.last_seq,
                "open": row.get("open", 0),
                "breached": row.get("breached", 0),
                "at_risk": row.get("at_risk", 0),
                "paused": row.get("paused", 0),
                "unassigned": row.get("unassigned", 0),
                "ages": ages,
            }
        )
    return summaries


DUE_NEXT = 8  # cases on the home page's "due next" list


def next_deadline(case: Case) -> tuple[dt.datetime | None, str]:
    """The deadline a case's clock shows: answering (claim or start) until someone did, then resolving."""
    if case.first_responded_at is None and case.first_response_due_at:
        return case.first_response_due_at, "answer"
    return case.resolution_due_at, "resolve"


def cases_due_next(queues: list[Queue], *, limit: int = DUE_NEXT) -> list[Case]:
    """The active, unpaused cases of `queues` whose next deadline comes first, overdue ones first (two queries).

    One read takes the first unanswered cases by their answer deadline, the other the first cases by their
    resolution deadline (each from an index); together they hold the first `limit` by the deadline each
    row shows, since a case is answered before it is resolved.
    """
    if not queues:
        return []
    unanswered, by_resolution = due_next_reads(queues, limit=limit)
    cases = {case.pk: case for case in [*unanswered, *by_resolution]}.values()
    far = dt.datetime.max.replace(tzinfo=dt.UTC)
    return sorted(cases, key=lambda case: (next_deadline(case)[0] or far, case.pk))[:limit]


def due_next_reads(queues: list[Queue], *, limit: int) -> tuple[QuerySet, QuerySet]:
    """cases_due_next's two reads: unanswered cases by answer deadline, all by resolution deadline."""
    waiting = (
        Case.objects.active()
        .filter(queue__in=queues, paused_at__isnull=True)
        .select_related("type", "queue", "warehouse", "assignee")
    )
    unanswered = waiting.filter(first_responded_at__isnull=True, first_response_due_at__isnull=False).order_by(
        "first_response_due_at", "id"
    )
    return unanswered[:limit], waiting.order_by(F("resolution_due_at").asc(nulls_last=True), "id")[:limit]


def summary_json(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key != "queue"}


# --- the case page ------------------------------------------------------------------------


FACT_LABELS = {"sku": "SKU", "line_no": "Line", "service_tier": "Service tier", "value": "Value"}


def case_facts(case: Case) -> list[tuple[str, str]]:
    """The case's context as label/value pairs in plain words (what the raiser recorded).

    Database ids stay out: the records they point at are shown, and linked, under what the case concerns.
    """
    facts = []
    for key, value in (case.context or {}).items():
        key = str(key)
        if value in (None, "", [], {}) or key == "id" or key.endswith("_id"):
            continue
        if isinstance(value, bool):
            value = "Yes" if value else "No"
        elif isinstance(value, list) and all(isinstance(part, str | int | float) for part in value):
            value = ", ".join(map(str, value))
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        elif key.endswith("status") and isinstance(value, str):
            value = value.replace("_", " ")  # a state code: "on_hold" reads "on hold"
        elif isinstance(value, str) and (moment := _moment_label(value)):
            value = moment
        facts.append((FACT_LABELS.get(key, key.replace("_", " ").capitalize()), str(value)))
    return facts


def _moment_label(value: str) -> str:
    """An ISO date and time from a case's context (a cutoff, say) on the clock it was recorded in, to the minute:
    "2026-12-07 09:23 (UTC+01:00)". Empty for other text, and for text shaped like a moment that is not one."""
    try:
        moment = parse_datetime(value) if "T" in value else None
    except ValueError:  # "2026-13-45T10:00"
        moment = None
    if moment is None:
        return ""
    if moment.tzinfo is None:
        return f"{moment:%Y-%m-%d %H:%M}"
    offset = moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M} ({'UTC' if offset == '+0000' else f'UTC{offset[:3]}:{offset[3:]}'})"


def subject_context(case: Case) -> dict:
    """What the case concerns, read from the owning apps: order and lines, task, stock by location, equipment.

    A fixed number of queries per subject kind (each list is one query).
    """
    from orchestration.models import Order, OrderLine, Task

    context: dict = {"order": None, "lines": [], "task": None, "stock": [], "equipment": None, "subject": None}
    subject_type, subject_id = case.subject_type, case.subject_id
    item_ids: set[int] = set()
    warehouse_id = case.warehouse_id
    order = None
    task_id = subject_id if subject_type == "orchestration.task" else (case.context or {}).get("task_id")
    if subject_type == "orchestration.orderline" and subject_id.isdigit():
        line = (
            OrderLine.objects.select_related("order", "order__customer", "order__warehouse")
            .filter(pk=int(subject_id))
            .first()
        )
        if line is not None:
            order = line.order
            item_ids.add(line.item_id)
    if str(task_id or "").isdigit():
        task = (
            Task.objects.select_related("order", "item", "location", "order_line", "warehouse")
            .filter(pk=int(str(task_id)))
            .first()
        )
        context["task"] = task
        if task is not None:
            order = order or task.order
            warehouse_id = warehouse_id or task.warehouse_id
            if task.item_id:
                item_ids.add(task.item_id)
            if task.equipment_code:
                context["equipment"] = _equipment(task.equipment_code)
    if subject_type == "orchestration.order" and subject_id.isdigit():
        order = Order.objects.select_related("customer", "warehouse").filter(pk=int(subject_id)).first()
    elif subject_type == "automation.equipment":
        context["equipment"] = _equipment(subject_id, by_pk=subject_id.isdigit())
    elif not subject_type.startswith("orchestration."):
        context["subject"] = _generic_subject(subject_type, subject_id)
    if order is None and case.order_number:
        order = Order.objects.select_related("customer", "warehouse").filter(number=case.order_number).first()
    if order is not None:
        context["order"] = order
        lines = list(OrderLine.objects.filter(order=order).select_related("item").order_by("line_no"))
        context["lines"] = lines
        warehouse_id = warehouse_id or order.warehouse_id
        if not item_ids:
            item_ids.update(line.item_id for line in lines)
    if context["subject"] is not None:
        item_ids.update(context["subject"].get("item_ids", []))
    if item_ids:
        context["stock"] = _stock_by_location(item_ids, warehouse_id)
    return context


def _equipment(code: str, *, by_pk: bool = False):
    try:
        from automation.models import Equipment
    except ImportError:  # pragma: no cover - automation is installed with the portal
        return None
    lookup: dict[str, object] = {"pk": int(code)} if by_pk else {"code": code}
    return Equipment.objects.filter(**lookup).first()


def _generic_subject(subject_type: str, subject_id: str) -> dict | None:
    """Any other subject: its label and status, and the items it holds (reservation, receipt, count …)."""
    from django.apps import apps

    try:
        model = apps.get_model(subject_type)
    except (LookupError, ValueError):
        return None
    try:
        instance = model._default_manager.filter(pk=subject_id).first()
    except (ValueError, TypeError):
        return None
    if instance is None:
        return None
    item_ids = []
    if getattr(instance, "item_id", None):
        item_ids.append(instance.item_id)
    stock_level = getattr(instance, "stock_level", None) if hasattr(instance, "stock_level_id") else None
    if stock_level is not None:
        item_ids.append(stock_level.item_id)
    return {
        "kind": model._meta.verbose_name,
        "label": str(instance),
        "status": getattr(instance, "get_status_display", lambda: "")(),
        "url": instance.get_absolute_url() if hasattr(instance, "get_absolute_url") else "",
        "item_ids": item_ids,
    }


def _stock_by_location(item_ids: set[int], warehouse_id) -> list[dict]:
    from inventory.models import StockLevel

    rows = StockLevel.objects.filter(item_id__in=item_ids).select_related(
        "item", "location", "location__warehouse", "lot"
    )
    if warehouse_id:
        rows = rows.filter(location__warehouse_id=warehouse_id)
    return [
        {
            "sku": row.item.sku,
            "warehouse": row.location.warehouse.code,
            "location": row.location.code,
            "kind": row.location.kind,
            "lot": row.lot.code if row.lot_id else "",
            "on_hand": row.on_hand,
            "reserved": row.reserved,
            "quarantined": row.quarantined,
            "available": row.available,
        }
        for row in rows.order_by("item__sku", "location__warehouse__code", "location__pick_sequence", "location__code")[
            :100
        ]
    ]


# --- the case timeline ---------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineItem:
    at: dt.datetime
    kind: str  # "case" | "comment" | "escalation" | "subject" | "event"
    title: str
    actor: str = ""
    detail: str = ""


def case_timeline(case: Case, *, limit: int = 200) -> list[TimelineItem]:
    """The case's history, comments and escalations and its subject's history, oldest first (4–5 queries)."""
    items: list[TimelineItem] = []
    status_labels = dict(Case.Status.choices)
    previous = None
    for row in case.history.order_by("history_date", "history_id").select_related("queue", "assignee")[:limit]:
        items.append(
            TimelineItem(
                at=row.history_date,
                kind="case",
                title=_case_change_title(row, previous, status_labels),
                actor=row.history_actor,
                detail=row.history_reason,
            )
        )
        previous = row
    for comment in CaseComment.objects.filter(case=case).select_related("author").order_by("created_at")[:limit]:
        items.append(
            TimelineItem(
                at=comment.created_at,
                kind="comment",
                title="Comment",
                actor=f"user:{comment.author.username}",
                detail=comment.body,
            )
        )
    for escalation in CaseEscalation.objects.filter(case=case).select_related("step").order_by("fired_at")[:limit]:
        items.append(
            TimelineItem(
                at=escalation.fired_at,
                kind="escalation",
                title=f"Escalation: {escalation.step.get_action_display()} after {escalation.step.after_minutes} min",
                actor="policy:sla",
                detail=escalation.outcome,
            )
        )
    items.extend(_subject_history(case, limit=limit))
    return sorted(items, key=lambda item: item.at)


def _case_change_title(row, previous, status_labels) -> str:
    status = status_labels.get(row.status, row.status)
    if previous is None:
        return f"Raised into {row.queue.name if row.queue_id else 'a queue'} ({status})"
    changes = []
    if row.status != previous.status:
        changes.append(f"{status_labels.get(previous.status, previous.status)} → {status}")
    if row.queue_id != previous.queue_id:
        changes.append(f"moved to {row.queue.name if row.queue_id else '—'}")
    if row.assignee_id != previous.assignee_id:
        changes.append(f"assigned to {row.assignee.username}" if row.assignee_id else "unassigned")
    if row.occurrences != previous.occurrences:
        changes.append(f"seen again ({row.occurrences} times)")
    if row.severity != previous.severity or row.priority != previous.priority:
        changes.append(f"severity {row.severity}, priority {row.priority}")
    if row.sla_state != previous.sla_state:
        changes.append(f"SLA {row.sla_state.replace('_', ' ')}")
    return "; ".join(changes).capitalize() if changes else "Updated"


def _subject_history(case: Case, *, limit: int) -> list[TimelineItem]:
    """History rows of what the case concerns: its subject, the task in its context and its order (≤ 4 queries)."""
    sources = [(case.subject_type, case.subject_id, case.subject_label or case.subject_id)]
    task_id = (case.context or {}).get("task_id")
    if task_id and case.subject_type != "orchestration.task":
        sources.append(("orchestration.task", str(task_id), str(task_id)))
    if case.order_number and case.subject_type != "orchestration.order":
        from orchestration.models import Order

        order_id = Order.objects.filter(number=case.order_number).values_list("pk", flat=True).first()
        if order_id:
            sources.append(("orchestration.order", str(order_id), case.order_number))
    items: list[TimelineItem] = []
    for subject_type, subject_id, label in sources:
        items.extend(_history_of(subject_type, subject_id, label, limit=limit))
    return items


def _history_of(subject_type: str, subject_id: str, label: str, *, limit: int) -> list[TimelineItem]:
    from django.apps import apps

    try:
        model = apps.get_model(subject_type)
    except (LookupError, ValueError):
        return []
    if not hasattr(model._meta, "simple_history_manager_attribute"):
        return []
    try:
        rows = list(model.history.filter(id=subject_id).order_by("-history_date")[:limit])
    except (ValueError, TypeError):
        return []
    kind = model._meta.verbose_name.capitalize()
    items = []
    for row in reversed(rows):
        status = getattr(row, "get_status_display", None)
        state = f" — {status()}" if callable(status) else ""
        items.append(
            TimelineItem(
                at=row.history_date,
                kind="subject",
                title=f"{kind} {label}{state}",
                actor=getattr(row, "history_actor", ""),
                detail=getattr(row, "history_reason", ""),
            )
        )
    return items
