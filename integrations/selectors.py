"""Reads shared by the integration monitor and the order timeline."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, Max, Min, Q
from django.urls import reverse
from django.utils import timezone

from integrations.models import InboundEvent, InboundRequest, OutboundAttempt, OutboundMessage, Partner
from portal.timeline import TimelineEntry

Status = OutboundMessage.Status
TIMELINE_LIMIT = 200


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
                extra={"direction": "outbound", "status": message.status, "attempts": message.attempts},
            )
        )
    for request in InboundRequest.objects.filter(order_number=number).select_related("partner")[:TIMELINE_LIMIT]:
        entries.append(
            TimelineEntry(
                at=request.received_at,
                kind="message",
                title=f"{request.method} {request.path} from {request.partner_id and request.partner.code}: "
                f"{request.status_code}",
                actor=f"partner:{request.partner.code}" if request.partner_id else "",
                detail=request.error[:200],
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


def status_counts() -> dict[int, dict[str, int]]:
    """Messages per partner id and status (one query)."""
    counts: dict[int, dict[str, int]] = {}
    for row in OutboundMessage.objects.values("partner_id", "status").annotate(n=Count("id")).order_by():
        counts.setdefault(row["partner_id"], {})[row["status"]] = row["n"]
    return counts


def partner_health(*, now: dt.datetime | None = None, window_minutes: int = 60) -> list[dict]:
    """Per partner: last success, error rate over the window, backlog and the oldest pending age (4 queries)."""
    now = now or timezone.now()
    since = now - dt.timedelta(minutes=window_minutes)
    partners = list(Partner.objects.exclude(kind=Partner.Kind.STOREFRONT).order_by("code"))
    counts = status_counts()
    backlog = {
        row["partner_id"]: row
        for row in OutboundMessage.objects.filter(status__in=[Status.PENDING, Status.SENDING])
        .values("partner_id")
        .annotate(oldest=Min("created_at"))
        .order_by()
    }
    last_success = dict(
        OutboundMessage.objects.filter(status=Status.DELIVERED)
        .values("partner_id")
        .annotate(at=Max("delivered_at"))
        .order_by()
        .values_list("partner_id", "at")
    )
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
        oldest = backlog.get(partner.pk, {}).get("oldest")
        error_rate = tries["failed"] / tries["total"] if tries["total"] else 0.0
        dead = by_status.get(Status.DEAD, 0)
        pending = by_status.get(Status.PENDING, 0) + by_status.get(Status.SENDING, 0)
        oldest_age = (now - oldest).total_seconds() if oldest else 0.0
        health.append(
            {
                "partner": partner,
                "by_status": {status.value: by_status.get(status.value, 0) for status in Status},
                "total": sum(by_status.values()),
                "backlog": pending,
                "dead": dead,
                "last_success": last_success.get(partner.pk),
                "attempts": tries["total"],
                "error_rate": error_rate,
                "error_percent": round(error_rate * 100),
                "oldest_pending_seconds": oldest_age,
                "state": _state(partner, error_rate=error_rate, dead=dead, oldest_age=oldest_age),
            }
        )
    return health


def _state(partner: Partner, *, error_rate: float, dead: int, oldest_age: float) -> str:
    """ok | degraded | failing | disabled — the colour of a partner's tile."""
    if not partner.is_enabled:
        return "disabled"
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
