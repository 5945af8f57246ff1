"""The integration monitor for IT support: partner health, messages by partner and status, dead letters, replay."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from integrations import delivery, selectors, services
from integrations.models import OutboundMessage, Partner
from portal.actors import Actor
from portal.domain import DomainError
from portal.roles import Role, require_role

MONITOR_ROLES = (Role.IT_SUPPORT, Role.OPERATIONS_ADMIN)
PAGE_SIZE = 50
DEAD_LETTER_LIMIT = 200


def _require(request) -> None:
    require_role(request.user, *MONITOR_ROLES, refusal="The integration monitor belongs to IT support.")


@login_required
@require_GET
def monitor(request):
    """Partner health tiles, inbound event backlogs, the dead letters with replay, and every message filtered."""
    _require(request)
    partner_code = request.GET.get("partner", "")
    status = request.GET.get("status", "")
    rows = OutboundMessage.objects.select_related("partner").order_by("-id")
    if partner_code:
        rows = rows.filter(partner__code=partner_code)
    if status in OutboundMessage.Status.values:
        rows = rows.filter(status=status)
    else:
        status = ""
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
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
            "inbound": selectors.inbound_health(now=now),
            "page": page,
            "dead_letters": dead_letters,
            "partners": Partner.objects.order_by("code").values_list("code", flat=True),
            "statuses": OutboundMessage.Status.choices,
            "partner_code": partner_code,
            "status": status,
        },
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
            "payload_json": json.dumps(message.payload, indent=2, sort_keys=True, default=str),
            "original_json": (
                json.dumps(message.corrected_from, indent=2, sort_keys=True, default=str)
                if message.corrected_from is not None
                else ""
            ),
            "attempts": message.attempt_log.order_by("id")[:100],
            "actions": message.actions.order_by("id"),
            "blocker": blocker,
            "can_replay": message.status in services.REPLAYABLE,
            "can_discard": message.status in services.DISCARDABLE,
        },
    )


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
