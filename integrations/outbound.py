"""Writing partner messages into the outbox, in the caller's transaction; dispatch follows the commit."""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from integrations.models import OutboundMessage, Partner
from portal.actors import Actor

logger = logging.getLogger(__name__)


def partner_for_kind(kind: str) -> Partner | None:
    """The enabled partner that receives messages of this kind (the first by code when several are)."""
    return Partner.objects.filter(kind=kind, is_enabled=True).order_by("code").first()


def claim_window(now: dt.datetime | None = None) -> dt.datetime:
    """Until when a queued delivery task owns a row; afterwards the tick queues it again (the task was lost)."""
    return (now or timezone.now()) + dt.timedelta(seconds=settings.OUTBOUND_CLAIM_SECONDS)


def message_send(
    *,
    partner_kind: str,
    message_type: str,
    payload: dict,
    ordering_key: str,
    order_number: str = "",
    actor: Actor,
    source_event_id: int | None = None,
    partner: Partner | None = None,
) -> OutboundMessage | None:
    """Write one message to a partner into the outbox in the caller's transaction; deliver after commit.

    Returns None (and logs) when no partner of that kind is enabled. A repeat for the same
    (partner, message type, source event) returns the message already written.
    """
    partner = partner or partner_for_kind(partner_kind)
    if partner is None:  # normal where a kind of partner is not connected: not worth a line per message
        logger.debug(
            "no enabled partner for outbound message",
            extra={"partner_kind": partner_kind, "message_type": message_type},
        )
        return None
    ordering_key = ordering_key[:100]
    # Behind an undelivered message of the same key it could not go now anyway: the earlier message's
    # delivery queues it (or the tick does), so no task is spent on it.
    waiting = OutboundMessage.objects.filter(
        partner=partner, ordering_key=ordering_key, status__in=OutboundMessage.BLOCKING
    ).exists()
    fields = {
        "payload": payload,
        "ordering_key": ordering_key,
        "order_number": order_number[:40],
        "actor": actor.label[:160],
        "claimed_until": None if waiting else claim_window(),
    }
    if source_event_id is None:
        message = OutboundMessage.objects.create(partner=partner, message_type=message_type, **fields)
        created = True
    else:
        message, created = _insert_once(partner, message_type, source_event_id, fields)
    if created and not waiting:
        message_id = message.pk
        transaction.on_commit(lambda: enqueue_delivery(message_id))
    return message


def _insert_once(
    partner: Partner, message_type: str, source_event_id: int, fields: dict
) -> tuple[OutboundMessage, bool]:
    """The message for (partner, type, source event), written unless it exists: (message, created).

    ``INSERT … ON CONFLICT DO NOTHING`` on the unique (partner, type, source event) leaves the
    caller's transaction usable without a savepoint; the row is then read back by that key, and
    the idempotency key (made here) tells whether it is the one just written.
    """
    candidate = OutboundMessage(partner=partner, message_type=message_type, source_event_id=source_event_id, **fields)
    OutboundMessage.objects.bulk_create([candidate], ignore_conflicts=True)
    message = OutboundMessage.objects.get(partner=partner, message_type=message_type, source_event_id=source_event_id)
    return message, message.idempotency_key == candidate.idempotency_key


def enqueue_delivery(message_id: int) -> None:
    """Hand one message to an outbound worker; if the broker is down the tick queues it later."""
    from integrations.tasks import deliver_message

    try:
        deliver_message.apply_async((message_id,), queue=settings.OUTBOUND_QUEUE)
    except Exception:
        logger.warning("outbound delivery not queued; the tick will retry", extra={"message_id": message_id})
