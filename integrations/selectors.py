"""Reads shared by the integration monitor and the order timeline."""

from __future__ import annotations

import datetime as dt

from django.db.models import Aggregate, Count, F, FloatField, Func, IntegerField, Max, Min, OuterRef, Q, Subquery
from django.db.models.fields.json import KeyTextTransform
from django.urls import reverse
from django.utils import timezone

from integrations.models import InboundEvent, InboundRequest, OutboundAttempt, OutboundMessage, Partner
from portal.models import DomainEvent
from portal.roles import Role
from portal.timeline import TimelineEntry

Status = OutboundMessage.Status
TIMELINE_LIMIT = 200
MONITOR_ROLES = (Role.IT_SUPPORT, Role.OPERATIONS_ADMIN)  # the integration pages are theirs


def timeline_entries(order) -> list[TimelineEntry]:
    """Messages about one order, both ways: what partners sent and what the portal sent them (3 queries)."""
    number = order.number
    entries = []
    for message in (
        OutboundMessage.objects.filter(order_number=number).select_related("partner").order_by("id")[:TIMELINE_LIMIT]
    ):
        entries.append(
            TimelineEntry(
                at=message.delivered_at or message.created_at,
                kind="message",
                title=f"{message.message_type} to {message.partner.code}: {message.get_status_display().lower()}",
                actor=message.actor,
                detail=message.last_error[:200] if message.status != Status.DELIVERED else "",
                url=reverse("integrations:message-detail", args=[message.pk]),
                url_roles=MONITOR_ROLES,
                extra={"direction": "outbound", "status": message.status, "attempts": message.attempts},
            )
        )
    for request in InboundRequest.objects.filter(order_number=number).select_related("partner")[:TIMELINE_LIMIT]:
        entries.append(
            TimelineEntry(
                at=request.received_at,
                kind="message",
                title=f"{request.method} {request.path} from {request.partner.code if request.partner else 'no partner'}: "
                f"{request.status_code}",
                actor=f"partner:{request.partner.code}" if request.partner else "",
                detail=request.refusal[:200],
                url=reverse("integrations:request-detail", args=[request.pk]),
                url_roles=MONITOR_ROLES,
                extra={"direction": "inbound"},
            )
        )
    for event in InboundEvent.objects.filter(order_number=number).select_related("partner")[:TIMELINE_LIMIT]:
        entries.append(
            TimelineEntry(
                at=event.occurred_at,
                kind="message",
                title=f"{event.type} from {event.partner.code}: {event.get_status_display().lower()}",
                actor=f"partner:{event.partner.code}",
                detail=event.last_error[:200],
                extra={"direction": "inbound", "event_id": event.event_id},
            )
        )
    return entries


OPEN = [Status.PENDING, Status.SENDING, Status.DEAD]  # what still needs the partner or a person
RECENT_HOURS = 24  # the monitor's status bar: what is open, and what was sent lately


def status_counts(*, since: dt.datetime | None = None) -> tuple[dict[int, dict[str, int]], dict[int, dt.datetime]]:
    """Messages per partner id and status: every open one (waiting, sending or dead) and, given `since`, the
    others created since then; and per partner the creation of its oldest message still to send (one query,
    from indexes; never the whole log)."""
    rows = OutboundMessage.objects.filter(status__in=OPEN)
    if since is not None:
        rows = OutboundMessage.objects.filter(Q(status__in=OPEN) | Q(created_at__gte=since))
    counts: dict[int, dict[str, int]] = {}
    oldest_to_send: dict[int, dt.datetime] = {}
    for row in rows.values("partner_id", "status").annotate(n=Count("id"), oldest=Min("created_at")).order_by():
        partner_id = row["partner_id"]
        counts.setdefault(partner_id, {})[row["status"]] = row["n"]
        if row["status"] in (Status.PENDING, Status.SENDING):
            known = oldest_to_send.get(partner_id)
            oldest_to_send[partner_id] = row["oldest"] if known is None else min(known, row["oldest"])
    return counts, oldest_to_send


def partner_health(*, now: dt.datetime | None = None, window_minutes: int = 60, totals: bool = True) -> list[dict]:
    """Per partner: last success, error rate over the window, backlog and the oldest pending age (3 queries).

    `by_status` counts every open message and, with `totals`, those of the last RECENT_HOURS too (the tile's
    bar); without, the panel that refreshes every few seconds skips the recent ones and the last success.
    Every read is answered from an index, however long the message log has grown.
    """
    now = now or timezone.now()
    since = now - dt.timedelta(minutes=window_minutes)
    query = Partner.objects.exclude(kind=Partner.Kind.STOREFRONT).order_by("code")
    if totals:
        query = query.annotate(
            last_success=Subquery(
                OutboundMessage.objects.filter(
                    partner=OuterRef("pk"), status=Status.DELIVERED, delivered_at__isnull=False
                )
                .order_by("-delivered_at")
                .values("delivered_at")[:1]
            )
        )
    partners = list(query)
    counts, oldest_to_send = status_counts(since=now - dt.timedelta(hours=RECENT_HOURS) if totals else None)
    attempts = {
        row["message__partner_id"]: row
        for row in OutboundAttempt.objects.filter(started_at__gte=since)
        .values("message__partner_id")
        .annotate(total=Count("id"), failed=Count("id", filter=~Q(outcome=OutboundAttempt.Outcome.DELIVERED)))
        .order_by()
    }
    health = []
    for partner in partners:
        by_status = counts.get(partner.pk, {})
        tries = attempts.get(partner.pk, {"total": 0, "failed": 0})
        oldest = oldest_to_send.get(partner.pk)
        error_rate = tries["failed"] / tries["total"] if tries["total"] else 0.0
        dead = by_status.get(Status.DEAD, 0)
        pending = by_status.get(Status.PENDING, 0) + by_status.get(Status.SENDING, 0)
        oldest_age = (now - oldest).total_seconds() if oldest else 0.0
        paused = partner.deliveries_paused(now)
        health.append(
            {
                "partner": partner,
                "paused": paused,
                "by_status": {status.value: by_status.get(status.value, 0) for status in Status},
                "total": sum(by_status.values()),
                "backlog": pending,
                "dead": dead,
                "last_success": getattr(partner, "last_success", None),
                "attempts": tries["total"],
                "error_rate": error_rate,
                "error_percent": round(error_rate * 100),
                "oldest_pending_seconds": oldest_age,
                "state": _state(partner, error_rate=error_rate, dead=dead, oldest_age=oldest_age, paused=paused),
            }
        )
    return health


def _state(partner: Partner, *, error_rate: float, dead: int, oldest_age: float, paused: bool = False) -> str:
    """ok | degraded | failing | paused | disabled — the colour of a partner's tile."""
    if not partner.is_enabled:
        return "disabled"
    if paused:
        return "paused"
    if dead or error_rate >= 0.5 or oldest_age > 900:
        return "failing"
    if error_rate >= 0.1 or oldest_age > 120:
        return "degraded"
    return "ok"


def inbound_health(*, now: dt.datetime | None = None) -> list[dict]:
    """Per partner that posts events: what waits to be processed, how long, what a retry holds, what failed (3 queries).

    Failed events stay until IT support replays or discards them (each raised an integration-failure case).
    """
    now = now or timezone.now()
    waiting = {
        row["partner_id"]: row
        for row in InboundEvent.objects.filter(status=InboundEvent.Status.PENDING)
        .values("partner_id")
        .annotate(
            waiting=Count("id"), oldest=Min("received_at"), retrying=Count("id", filter=Q(next_attempt_at__gt=now))
        )
        .order_by()
    }
    failed = dict(
        InboundEvent.objects.filter(status=InboundEvent.Status.FAILED)
        .values("partner_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("partner_id", "n")
    )
    rows = []
    for partner in Partner.objects.order_by("code"):
        if (
            Partner.Scope.EVENTS_WRITE.value not in (partner.scopes or [])
            and partner.pk not in waiting.keys() | failed.keys()
        ):
            continue
        queue = waiting.get(partner.pk, {})
        oldest = queue.get("oldest")
        oldest_age = (now - oldest).total_seconds() if oldest else 0.0
        rows.append(
            {
                "partner": partner,
                "waiting": queue.get("waiting", 0),
                "oldest_waiting_seconds": oldest_age,
                "retrying": queue.get("retrying", 0),
                "failed": failed.get(partner.pk, 0),
                "state": _inbound_state(
                    partner, oldest_age=oldest_age, retrying=queue.get("retrying", 0), failed=failed.get(partner.pk, 0)
                ),
            }
        )
    return rows


def _inbound_state(partner: Partner, *, oldest_age: float, retrying: int, failed: int) -> str:
    """ok | degraded | failing | disabled, as for outbound: events waiting minutes mean stale stock and tasks."""
    if not partner.is_enabled:
        return "disabled"
    if failed or oldest_age > 900:
        return "failing"
    if retrying or oldest_age > 120:
        return "degraded"
    return "ok"


# --- traffic: what went each way per partner, in time buckets --------------------------------

TRAFFIC_HOURS = 6
TRAFFIC_BUCKET_MINUTES = 30


def _bucket(field: str, seconds: int) -> Func:
    """The index of `field`'s bucket of `seconds` since the epoch (groups rows by half hour, say)."""
    return Func(
        F(field),
        template=f"floor(extract(epoch from %(expressions)s) / {int(seconds)})",
        output_field=IntegerField(),
    )


def _bucket_counts(rows, *, partner: str, at: str, failed: Q, seconds: int) -> dict[tuple[int, int], dict]:
    """{(partner id, bucket index): {"total", "failed"}} for `rows` since the window's start (one query)."""
    counted = (
        rows.annotate(bucket=_bucket(at, seconds))
        .values(partner, "bucket")
        .annotate(total=Count("id"), failed=Count("id", filter=failed))
        .order_by()
    )
    return {(row[partner], row["bucket"]): row for row in counted}


def partner_traffic(
    *, now: dt.datetime | None = None, hours: int = TRAFFIC_HOURS, bucket_minutes: int = TRAFFIC_BUCKET_MINUTES
) -> list[dict]:
    """Per partner, for each bucket of the last `hours`: API requests it made (refused ones apart), events it
    posted (failed ones apart) and deliveries the portal tried to it (failed tries apart). Four queries.

    A partner with no traffic at all in the window is left out.
    """
    now = now or timezone.now()
    seconds = bucket_minutes * 60
    last = int(now.timestamp()) // seconds
    indexes = list(range(last - (hours * 60) // bucket_minutes + 1, last + 1))
    since = dt.datetime.fromtimestamp(indexes[0] * seconds, tz=dt.UTC)
    streams = {
        "requests": _bucket_counts(
            InboundRequest.objects.filter(received_at__gte=since, partner__isnull=False),
            partner="partner_id",
            at="received_at",
            failed=Q(status_code__gte=400),
            seconds=seconds,
        ),
        "events": _bucket_counts(
            InboundEvent.objects.filter(received_at__gte=since),
            partner="partner_id",
            at="received_at",
            failed=Q(status=InboundEvent.Status.FAILED),
            seconds=seconds,
        ),
        "deliveries": _bucket_counts(
            OutboundAttempt.objects.filter(started_at__gte=since),
            partner="message__partner_id",
            at="started_at",
            failed=~Q(outcome=OutboundAttempt.Outcome.DELIVERED),
            seconds=seconds,
        ),
    }
    active = {partner_id for counts in streams.values() for partner_id, _ in counts}
    traffic = []
    for partner in Partner.objects.filter(pk__in=active).order_by("code"):
        row: dict[str, object] = {"partner": partner}
        for name, counts in streams.items():
            buckets = []
            for index in indexes:
                counted = counts.get((partner.pk, index), {"total": 0, "failed": 0})
                start = timezone.localtime(dt.datetime.fromtimestamp(index * seconds, tz=dt.UTC))
                buckets.append(
                    {
                        "start": start,
                        "label": start.strftime("%H:%M"),
                        "ok": counted["total"] - counted["failed"],
                        "failed": counted["failed"],
                    }
                )
            row[name] = {
                "buckets": buckets,
                "total": sum(bucket["ok"] + bucket["failed"] for bucket in buckets),
                "failed": sum(bucket["failed"] for bucket in buckets),
                "peak": max([bucket["ok"] + bucket["failed"] for bucket in buckets] + [1]),
            }
        traffic.append(row)
    return traffic


# --- the API request log ------------------------------------------------------------------------

REQUEST_OUTCOMES = {
    "accepted": ("Accepted", Q(status_code__lt=400)),
    "refused": ("Refused", Q(status_code__gte=400)),
}


def request_list(*, partner_code: str = "", outcome: str = "", search: str = ""):
    """The API requests partners made, newest first: by partner, accepted or refused, and an order's number or
    the partner's external reference (both indexed)."""
    rows = InboundRequest.objects.select_related("partner").order_by("-received_at", "-id")
    if partner_code:
        rows = rows.filter(partner__code=partner_code)
    if outcome in REQUEST_OUTCOMES:
        rows = rows.filter(REQUEST_OUTCOMES[outcome][1])
    search = search.strip()
    if search:
        rows = rows.alias(external_ref=KeyTextTransform("external_ref", "payload")).filter(
            Q(order_number=search.upper()) | Q(external_ref=search)
        )
    return rows


class Slowest5Percent(Aggregate):
    """The value 95% of the rows are at or under (PostgreSQL's percentile_cont)."""

    template = "percentile_cont(0.95) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


def request_summary(*, now: dt.datetime | None = None, window_minutes: int = 60) -> list[dict]:
    """Per partner over the window: requests, refused ones and their share, the slowest 5%, the last refusal
    (one query)."""
    now = now or timezone.now()
    since = now - dt.timedelta(minutes=window_minutes)
    refused = Q(status_code__gte=400)
    rows = (
        InboundRequest.objects.filter(received_at__gte=since, partner__isnull=False)
        .values("partner__code", "partner__name")
        .annotate(
            total=Count("id"),
            refused=Count("id", filter=refused),
            last_refused=Max("received_at", filter=refused),
            p95_ms=Slowest5Percent("duration_ms"),
        )
        .order_by("partner__code")
    )
    return [
        {**row, "refused_percent": round(100 * row["refused"] / row["total"]) if row["total"] else 0} for row in rows
    ]


# --- the partner event log ----------------------------------------------------------------------


# Machines' "still alive" pings: most of the event log, and rarely what anyone looks for.
HEARTBEAT_TYPES = ["wcs.heartbeat"]


def event_list(
    *, partner_code: str = "", status: str = "", event_type: str = "", search: str = "", heartbeats: bool = False
):
    """Events partners posted, newest first: by partner, status and type, and an event id, an order's number or a
    subject ("task:123", "item:SKU") — each answered from an index. Heartbeats are left out unless asked for,
    by type or by `heartbeats`, or a search names one."""
    rows = InboundEvent.objects.select_related("partner").order_by("-received_at", "-id")
    if not (heartbeats or event_type or search.strip()):
        rows = rows.exclude(type__in=HEARTBEAT_TYPES)
    if partner_code:
        rows = rows.filter(partner__code=partner_code)
    if status in InboundEvent.Status.values:
        rows = rows.filter(status=status)
    if event_type:
        rows = rows.filter(type=event_type)
    search = search.strip()
    if search:
        # An event id is unique per partner: naming every partner lets the (partner, event id) index answer it.
        partner_ids = list(Partner.objects.values_list("pk", flat=True))
        rows = rows.filter(
            Q(partner_id__in=partner_ids, event_id=search) | Q(order_number=search.upper()) | Q(subject_key=search)
        )
    return rows


def event_blocker(event: InboundEvent) -> InboundEvent | None:
    """For a pending event: the earlier pending event of its subject it waits behind, if any (one query)."""
    if event.status != InboundEvent.Status.PENDING:
        return None
    return (
        InboundEvent.objects.filter(subject_key=event.subject_key, status=InboundEvent.Status.PENDING, id__lt=event.pk)
        .order_by("id")
        .first()
    )


def event_actions(event: InboundEvent) -> list:
    """What people did to a partner event (replays, discards), oldest first (one query)."""
    return list(
        DomainEvent.objects.filter(
            subject_type=event._meta.label_lower,
            subject_id=str(event.pk),
            name__in=["inbound_event.replayed", "inbound_event.discarded"],
        ).order_by("id")[:100]
    )


# --- IT support's home panel ----------------------------------------------------------------------

STATE_RANK = {"disabled": 0, "ok": 1, "paused": 2, "degraded": 3, "failing": 4}


def partner_overview(*, now: dt.datetime | None = None) -> list[dict]:
    """Per partner, both ways at a glance: the worse of its outbound and inbound state, what waits to go out and
    since when, dead letters, events waiting and failed, and API requests refused in the last hour (8 queries,
    none of them over the whole message log)."""
    now = now or timezone.now()
    outbound = {row["partner"].pk: row for row in partner_health(now=now, totals=False)}
    inbound = {row["partner"].pk: row for row in inbound_health(now=now)}
    requests = {row["partner__code"]: row for row in request_summary(now=now)}
    rows = []
    for partner in Partner.objects.order_by("code"):
        out = outbound.get(partner.pk, {})
        into = inbound.get(partner.pk, {})
        asked = requests.get(partner.code, {})
        states = [row["state"] for row in (out, into) if row] or ["disabled" if not partner.is_enabled else "ok"]
        rows.append(
            {
                "partner": partner,
                "state": max(states, key=STATE_RANK.__getitem__),
                "paused_until": partner.deliveries_paused_until if partner.deliveries_paused(now) else None,
                "backlog": out.get("backlog", 0),
                "oldest_pending_seconds": out.get("oldest_pending_seconds", 0.0),
                "dead": out.get("dead", 0),
                "events_waiting": into.get("waiting", 0),
                "events_failed": into.get("failed", 0),
                "requests": asked.get("total", 0),
                "refused": asked.get("refused", 0),
            }
        )
    return rows
