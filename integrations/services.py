"""IT support's fixes for outbound messages: replay (optionally with a corrected payload) and discard;
pausing a partner's deliveries for its maintenance window; and the retention of the message logs.

The ``integration_failure`` case type's resolutions "replay" and "discard" call these with
the resolving person as actor; the case itself is resolved by ``case_resolve``, never here.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from django.db import transaction
from django.utils import timezone

from integrations.models import InboundEvent, InboundRequest, OutboundAction, OutboundMessage, Partner
from integrations.outbound import claim_window, enqueue_delivery
from integrations.selectors import MONITOR_ROLES
from portal.actors import Actor, stamp_history
from portal.domain import DomainError, InvalidInput, NotFound, PermissionRefused, TransitionRefused, require_reason
from portal.events import emit
from portal.roles import allowed

Status = OutboundMessage.Status
REPLAYABLE = (Status.DEAD, Status.DISCARDED, Status.PENDING)
DISCARDABLE = (Status.DEAD, Status.PENDING)

logger = logging.getLogger(__name__)


def require_fixer(actor: Actor) -> None:
    """Who watches the integrations fixes them: IT support or an operations admin (systems and policies may too)."""
    if actor.kind == "user" and not allowed(actor.user, *MONITOR_ROLES):
        raise PermissionRefused(
            "Only IT support or an operations admin may replay or discard partner messages and events, or pause "
            "deliveries; ask one of them."
        )


def _lock(message_id) -> OutboundMessage:
    try:
        return (
            OutboundMessage.objects.select_for_update(of=("self",), no_key=True)
            .select_related("partner")
            .get(pk=message_id)
        )
    except (OutboundMessage.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"No outbound message {message_id}.") from None


def _payload_event(name: str, message: OutboundMessage, *, actor: Actor, reason: str, **extra) -> None:
    emit(
        name,
        subject=message,
        actor=actor,
        reason=reason,
        payload={
            "message_id": message.pk,
            "partner": message.partner.code,
            "message_type": message.message_type,
            "order": message.order_number,
            "status": message.status,
            **extra,
        },
    )


def message_replay(*, message_id: int, actor: Actor, reason: str, payload: dict | None = None) -> OutboundMessage:
    """Send a dead, discarded or waiting message again now, with fresh attempts; a corrected payload is recorded."""
    require_reason(reason)
    require_fixer(actor)
    if payload is not None and not isinstance(payload, dict):
        raise InvalidInput("A corrected payload must be a JSON object.", fields={"payload": ["Must be an object."]})
    with transaction.atomic():
        message = _lock(message_id)
        if message.status not in REPLAYABLE:
            raise TransitionRefused(
                f"Message #{message.pk} is {message.get_status_display().lower()}; only dead, discarded or "
                "waiting messages can be replayed."
            )
        now = timezone.now()
        corrected = payload is not None and payload != message.payload
        action = OutboundAction(
            message=message,
            kind=OutboundAction.Kind.CORRECT if corrected else OutboundAction.Kind.REPLAY,
            actor=actor.label,
            reason=reason,
            previous_status=message.status,
        )
        fields = ["status", "attempts", "next_attempt_at", "claimed_until", "sending_since"]
        if corrected:
            action.previous_payload = message.payload
            action.previous_idempotency_key = message.idempotency_key
            if message.corrected_from is None:
                message.corrected_from = message.payload
            message.payload = payload
            # A receiver that keeps the first answer per key would refuse a different body under the old key.
            message.idempotency_key = uuid.uuid4()
            fields += ["payload", "corrected_from", "idempotency_key"]
        message.status = Status.PENDING
        message.attempts = 0
        message.next_attempt_at = now
        message.claimed_until = claim_window(now)
        message.sending_since = None
        message.save(update_fields=fields)
        action.save()
        _payload_event("integration.message_replayed", message, actor=actor, reason=reason, corrected=corrected)
        transaction.on_commit(lambda: enqueue_delivery(message.pk))
    return message


def message_discard(*, message_id: int, actor: Actor, reason: str) -> OutboundMessage:
    """Give up on a message on purpose: it is never sent, and later messages of its key may go."""
    require_reason(reason)
    require_fixer(actor)
    with transaction.atomic():
        message = _lock(message_id)
        if message.status not in DISCARDABLE:
            raise TransitionRefused(
                f"Message #{message.pk} is {message.get_status_display().lower()}; only dead or waiting "
                "messages can be discarded."
            )
        OutboundAction.objects.create(
            message=message,
            kind=OutboundAction.Kind.DISCARD,
            actor=actor.label,
            reason=reason,
            previous_status=message.status,
        )
        message.status = Status.DISCARDED
        message.claimed_until = None
        message.save(update_fields=["status", "claimed_until"])
        _payload_event("integration.message_discarded", message, actor=actor, reason=reason)
        follower = (
            OutboundMessage.objects.filter(
                partner_id=message.partner_id,
                ordering_key=message.ordering_key,
                pk__gt=message.pk,
                status=Status.PENDING,
            )
            .order_by("pk")
            .values_list("pk", flat=True)
            .first()
        )
        if follower:
            transaction.on_commit(lambda: enqueue_delivery(follower))
    return message


def messages_replay_bulk(*, message_ids: list[int], actor: Actor, reason: str) -> dict:
    """Replay each message on its own (each re-checked); returns {"done": [ids], "refused": {id: message}}."""
    require_reason(reason)
    done: list[int] = []
    refused: dict[int, str] = {}
    for message_id in dict.fromkeys(message_ids):
        try:
            message_replay(message_id=message_id, actor=actor, reason=reason)
        except DomainError as error:
            refused[message_id] = error.message
        else:
            done.append(message_id)
    return {"done": done, "refused": refused}


# --- pausing a partner's deliveries ------------------------------------------------------------

MAX_PAUSE = dt.timedelta(hours=24)  # a forgotten pause must not hold messages for days


def _lock_partner(partner_id) -> Partner:
    try:
        return Partner.objects.select_for_update(no_key=True).get(pk=partner_id)
    except (Partner.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"No partner {partner_id}.") from None


def partner_deliveries_pause(*, partner_id: int, until: dt.datetime, actor: Actor, reason: str) -> Partner:
    """Hold messages to a partner until `until` (its maintenance window): they wait instead of burning attempts."""
    require_reason(reason)
    require_fixer(actor)
    now = timezone.now()
    if until <= now:
        raise InvalidInput("The pause must end in the future.", fields={"until": ["A time after now."]})
    if until > now + MAX_PAUSE:
        raise InvalidInput(
            "A pause lasts 24 hours at most; pause again when it ends if the partner is still down.",
            fields={"until": ["Within 24 hours."]},
        )
    with transaction.atomic():
        partner = _lock_partner(partner_id)
        partner.deliveries_paused_until = until
        partner.deliveries_pause_reason = reason.strip()[:300]
        stamp_history(partner, actor=actor, reason=reason)
        partner.save(update_fields=["deliveries_paused_until", "deliveries_pause_reason", "updated_at"])
        emit(
            "partner.deliveries_paused",
            subject=partner,
            actor=actor,
            reason=reason,
            payload={"partner": partner.code, "until": until.isoformat()},
        )
    return partner


def partner_deliveries_resume(*, partner_id: int, actor: Actor, reason: str) -> Partner:
    """End a partner's pause now: the outbound tick sends what waited, oldest first, in order per key."""
    require_reason(reason)
    require_fixer(actor)
    with transaction.atomic():
        partner = _lock_partner(partner_id)
        if partner.deliveries_paused_until is None:
            return partner
        partner.deliveries_paused_until = None
        partner.deliveries_pause_reason = ""
        stamp_history(partner, actor=actor, reason=reason)
        partner.save(update_fields=["deliveries_paused_until", "deliveries_pause_reason", "updated_at"])
        emit(
            "partner.deliveries_resumed", subject=partner, actor=actor, reason=reason, payload={"partner": partner.code}
        )
    return partner


# --- retention of the message logs ----------------------------------------------------------

# What a prune may delete, by kind: the model, the moment its age counts from, and the states whose work is over
# (None: every row). Waiting, failed and dead-letter rows stay whatever their age: someone still owns them.
PRUNABLE = {
    "inbound_requests": (InboundRequest, "received_at", None),
    "inbound_events": (InboundEvent, "received_at", [InboundEvent.Status.PROCESSED, InboundEvent.Status.IGNORED]),
    "outbound_messages": (OutboundMessage, "created_at", [Status.DELIVERED, Status.DISCARDED]),
}


def message_logs_prune(
    *, older_than: dt.datetime, actor: Actor, batch_size: int = 2000, dry_run: bool = False, progress=None
) -> dict[str, int]:
    """Delete finished message logs received or written before `older_than`, in short batches; returns counts.

    Each batch is its own transaction, so a large backlog never holds locks for long and an
    interrupted run keeps what it did. `progress(kind, deleted_so_far)` is called after each batch.
    With `dry_run`, counts what would go and deletes nothing.
    """
    if batch_size < 1:
        raise InvalidInput("The batch size must be at least 1.", fields={"batch_size": ["At least 1."]})
    counts = {}
    for kind, (model, age_field, finished) in PRUNABLE.items():
        due = model._default_manager.filter(**{f"{age_field}__lt": older_than})
        if finished is not None:
            due = due.filter(status__in=finished)
        if dry_run:
            counts[kind] = due.count()
            continue
        deleted = 0
        while True:
            with transaction.atomic():
                ids = list(due.order_by("pk").values_list("pk", flat=True)[:batch_size])
                if not ids:
                    break
                # Attempts and replay records of a message go with it (CASCADE).
                model._default_manager.filter(pk__in=ids).delete()
            deleted += len(ids)
            if progress is not None:
                progress(kind, deleted)
        counts[kind] = deleted
    if not dry_run and any(counts.values()):
        logger.info("message logs pruned", extra={"older_than": older_than.isoformat(), "actor": actor.label, **counts})
    return counts
