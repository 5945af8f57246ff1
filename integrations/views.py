"""IT support's integration pages: the monitor (partner health and traffic, dead letters and replay, messages by
partner, status or order, pausing a partner's deliveries), the API request log, the partner event log with replay
and discard, and the partner panel on the home page."""

from __future__ import annotations

import datetime as dt
import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from integrations import delivery, inbound, selectors, services
from integrations.models import InboundEvent, InboundRequest, OutboundMessage, Partner
from orchestration import selectors as order_selectors
from portal.actors import Actor
from portal.domain import DomainError
from portal.home import home_panel, panel_alone
from portal.paging import paginate
from portal.roles import require_role

DEAD_LETTER_LIMIT = 200


def _require(request) -> None:
    require_role(request.user, *selectors.MONITOR_ROLES, refusal="The integration monitor belongs to IT support.")


@login_required
@require_GET
def monitor(request):
    """Partner health tiles and traffic, inbound event backlogs, the dead letters with replay, and every message
    filtered by partner, status or order."""
    _require(request)
    partner_code = request.GET.get("partner", "")
    status = request.GET.get("status", "")
    order_number = request.GET.get("order", "").strip()
    rows = OutboundMessage.objects.select_related("partner").order_by("-id")
    if partner_code:
        rows = rows.filter(partner__code=partner_code)
    if status in OutboundMessage.Status.values:
        rows = rows.filter(status=status)
    else:
        status = ""
    if order_number:
        rows = rows.filter(order_number=order_number.upper())
    now = timezone.now()
    dead_letters = list(
        OutboundMessage.objects.filter(status=OutboundMessage.Status.DEAD)
        .select_related("partner")
        .order_by("id")[:DEAD_LETTER_LIMIT]
    )
    return render(
        request,
        "integrations/monitor.html",
        {
            "health": selectors.partner_health(now=now),
            "traffic": selectors.partner_traffic(now=now),
            "pause_choices": PAUSE_CHOICES,
            "traffic_hours": selectors.TRAFFIC_HOURS,
            "recent_hours": selectors.RECENT_HOURS,
            "inbound": selectors.inbound_health(now=now),
            **paginate(request, rows),
            "dead_letters": dead_letters,
            "partners": Partner.objects.order_by("code").values_list("code", flat=True),
            "statuses": OutboundMessage.Status.choices,
            "partner_code": partner_code,
            "status": status,
            "order_number": order_number,
        },
    )


@login_required
@require_GET
def request_list(request):
    """The API requests partners made (every write and every refusal), with each partner's last hour summed up:
    how IT support answers "we sent that order, what did you say?"."""
    _require(request)
    partner_code = request.GET.get("partner", "")
    outcome = request.GET.get("outcome", "")
    if outcome not in selectors.REQUEST_OUTCOMES:
        outcome = ""
    search = request.GET.get("q", "").strip()[:100]
    rows = selectors.request_list(partner_code=partner_code, outcome=outcome, search=search)
    return render(
        request,
        "integrations/request_list.html",
        {
            "summary": selectors.request_summary(),
            **paginate(request, rows),
            "partners": Partner.objects.order_by("code").values_list("code", flat=True),
            "outcomes": [(value, label) for value, (label, _) in selectors.REQUEST_OUTCOMES.items()],
            "partner_code": partner_code,
            "outcome": outcome,
            "search": search,
            "order_links": order_selectors.may_open_orders(request.user),
        },
    )


@login_required
@require_GET
def request_detail(request, pk: int):
    """One API request: who sent what, what the portal answered and why, and the order it concerns."""
    _require(request)
    logged = get_object_or_404(InboundRequest.objects.select_related("partner"), pk=pk)
    return render(
        request,
        "integrations/request_detail.html",
        {
            "logged": logged,
            "payload_json": _pretty(logged.payload),
            "response_json": _pretty(logged.response),
            "external_ref": logged.payload.get("external_ref", "") if isinstance(logged.payload, dict) else "",
            "order_links": order_selectors.may_open_orders(request.user),
        },
    )


@login_required
@require_GET
def event_list(request):
    """The events partners posted (picks, shorts, arrivals, shipments…), by partner, status and type, found by event
    id, order or subject."""
    _require(request)
    partner_code = request.GET.get("partner", "")
    status = request.GET.get("status", "")
    if status not in InboundEvent.Status.values:
        status = ""
    event_type = request.GET.get("type", "")
    if event_type not in inbound.event_types():
        event_type = ""
    search = request.GET.get("q", "").strip()[:100]
    heartbeats = request.GET.get("heartbeats") == "1"
    rows = selectors.event_list(
        partner_code=partner_code, status=status, event_type=event_type, search=search, heartbeats=heartbeats
    )
    return render(
        request,
        "integrations/event_list.html",
        {
            **paginate(request, rows),
            "partners": Partner.objects.order_by("code").values_list("code", flat=True),
            "statuses": InboundEvent.Status.choices,
            "types": inbound.event_types(),
            "partner_code": partner_code,
            "status": status,
            "event_type": event_type,
            "search": search,
            "heartbeats": heartbeats,
            "order_links": order_selectors.may_open_orders(request.user),
        },
    )


@login_required
@require_GET
def event_detail(request, pk: int):
    """One partner event: what it said, what became of it, what it waits behind; replay or discard a failed one."""
    _require(request)
    event = get_object_or_404(InboundEvent.objects.select_related("partner"), pk=pk)
    return render(
        request,
        "integrations/event_detail.html",
        {
            "event": event,
            "payload_json": _pretty(event.payload),
            "blocker": selectors.event_blocker(event),
            "actions": selectors.event_actions(event),
            "can_replay": event.status in inbound.REPLAYABLE_EVENTS,
            "can_discard": event.status in inbound.DISCARDABLE_EVENTS,
            "order_links": order_selectors.may_open_orders(request.user),
        },
    )


@login_required
@require_POST
def event_replay(request, pk: int):
    """Put a failed or ignored event back in its subject's queue, once its cause is fixed (reason required)."""
    _require(request)
    event = get_object_or_404(InboundEvent, pk=pk)
    try:
        inbound.inbound_event_replay(
            event=event, actor=Actor.for_user(request.user), reason=request.POST.get("reason", "")
        )
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Event {event.event_id} queued again; the worker takes it next for its subject.")
    return redirect(reverse("integrations:event-detail", args=[pk]))


@login_required
@require_POST
def event_discard(request, pk: int):
    """Give up on a failed event on purpose (reason required); its case closes and its subject's later events go."""
    _require(request)
    event = get_object_or_404(InboundEvent, pk=pk)
    try:
        inbound.inbound_event_discard(
            event=event, actor=Actor.for_user(request.user), reason=request.POST.get("reason", "")
        )
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Event {event.event_id} discarded.")
    return redirect(reverse("integrations:event-detail", args=[pk]))


def _pretty(value) -> str:
    return "" if value is None else json.dumps(value, indent=2, sort_keys=True, default=str)


@home_panel(
    key="partners",
    title="Partners",
    template="integrations/_home_partners.html",
    roles=selectors.MONITOR_ROLES,
    order=20,
    wide=True,
)
def partners_panel(request) -> dict:
    return {"partners": selectors.partner_overview()}


@login_required
@require_GET
def partners_panel_alone(request):
    """The home page's partner panel alone, refetched by the page every 30 seconds."""
    return panel_alone(
        request,
        partners_panel,
        "integrations/_partner_rows.html",
        roles=selectors.MONITOR_ROLES,
        refusal="The partner panel belongs to IT support.",
    )


@login_required
@require_GET
def message_detail(request, pk: int):
    """One message: payload (and the original, if corrected), every attempt, every fix, what blocks it."""
    _require(request)
    message = get_object_or_404(OutboundMessage.objects.select_related("partner"), pk=pk)
    blocker = delivery.blocker_of(message) if message.status == OutboundMessage.Status.PENDING else None
    return render(
        request,
        "integrations/message_detail.html",
        {
            "message": message,
            "payload_json": _pretty(message.payload),
            "original_json": _pretty(message.corrected_from),
            "attempts": message.attempt_log.order_by("id")[:100],
            "actions": message.actions.order_by("id"),
            "blocker": blocker,
            "can_replay": message.status in services.REPLAYABLE,
            "can_discard": message.status in services.DISCARDABLE,
        },
    )


PAUSE_CHOICES = [(30, "30 minutes"), (60, "1 hour"), (120, "2 hours"), (240, "4 hours"), (480, "8 hours")]


@login_required
@require_POST
def partner_pause(request, pk: int):
    """Hold a partner's deliveries for its maintenance window (a few hours, reason required)."""
    _require(request)
    try:
        minutes = int(request.POST.get("minutes", ""))
    except ValueError:
        minutes = 0
    if minutes not in dict(PAUSE_CHOICES):
        messages.error(request, "Pick how long to pause for.")
        return redirect(reverse("integrations:monitor"))
    try:
        partner = services.partner_deliveries_pause(
            partner_id=pk,
            until=timezone.now() + dt.timedelta(minutes=minutes),
            actor=Actor.for_user(request.user),
            reason=request.POST.get("reason", ""),
        )
    except DomainError as error:
        messages.error(request, error.message)
    else:
        until = timezone.localtime(partner.deliveries_paused_until).strftime("%H:%M")
        messages.success(request, f"Deliveries to {partner.code} paused until {until}; messages wait, none is tried.")
    return redirect(reverse("integrations:monitor"))


@login_required
@require_POST
def partner_resume(request, pk: int):
    """End a partner's pause now: what waited goes out, in order."""
    _require(request)
    try:
        partner = services.partner_deliveries_resume(
            partner_id=pk, actor=Actor.for_user(request.user), reason=request.POST.get("reason", "")
        )
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Deliveries to {partner.code} resumed; waiting messages go out within seconds.")
    return redirect(reverse("integrations:monitor"))


def _back(request, default: str):
    target = request.POST.get("next") or default
    return redirect(target if target.startswith("/") and not target.startswith("//") else default)


@login_required
@require_POST
def message_replay(request, pk: int):
    """Replay one message, optionally with a corrected JSON payload (reason required; recorded)."""
    _require(request)
    payload = None
    raw = request.POST.get("payload", "").strip()
    detail = reverse("integrations:message-detail", args=[pk])
    if raw:
        try:
            payload = json.loads(raw)
        except json.JSONDecodeError as error:
            messages.error(request, f"The corrected payload is not valid JSON: {error}")
            return redirect(detail)
    try:
        services.message_replay(
            message_id=pk, actor=Actor.for_user(request.user), reason=request.POST.get("reason", ""), payload=payload
        )
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(
            request, f"Message #{pk} queued for delivery{' with the corrected payload' if payload else ''}."
        )
    return _back(request, detail)


@login_required
@require_POST
def message_discard(request, pk: int):
    """Discard one message on purpose (reason required): later messages of its key are released."""
    _require(request)
    try:
        services.message_discard(
            message_id=pk, actor=Actor.for_user(request.user), reason=request.POST.get("reason", "")
        )
    except DomainError as error:
        messages.error(request, error.message)
    else:
        messages.success(request, f"Message #{pk} discarded.")
    return _back(request, reverse("integrations:message-detail", args=[pk]))


@login_required
@require_POST
def messages_replay_bulk(request):
    """Replay the ticked dead letters; each is re-checked and reported on its own."""
    _require(request)
    monitor_url = reverse("integrations:monitor")
    ids = []
    for value in request.POST.getlist("message"):
        if value.isdigit():
            ids.append(int(value))
    if not ids:
        messages.error(request, "Tick at least one message to replay.")
        return redirect(monitor_url)
    try:
        outcome = services.messages_replay_bulk(
            message_ids=ids, actor=Actor.for_user(request.user), reason=request.POST.get("reason", "")
        )
    except DomainError as error:
        messages.error(request, error.message)
        return redirect(monitor_url)
    if outcome["done"]:
        done = ", ".join(f"#{pk}" for pk in outcome["done"])
        messages.success(request, f"Replayed {len(outcome['done'])}: {done}.")
    for pk, why in outcome["refused"].items():
        messages.error(request, f"#{pk} not replayed: {why}")
    return redirect(monitor_url)
