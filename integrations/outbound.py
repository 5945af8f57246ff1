"""Writing partner messages into the outbox, in the caller's transaction; dispatch follows the commit."""

from __future__ import annotations

import datetime as dt
import functools
import logging

from django.conf import settings
from django.db import connection, transaction
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
    message = OutboundMessage(
        message_type=message_type,
        source_event_id=source_event_id,
        payload=payload,
        ordering_key=ordering_key[:100],
        order_number=order_number[:40],
        actor=actor.label[:160],
        claimed_until=claim_window(),
    )
    written = _write_once(message, partner_kind=partner_kind, partner=partner)
    if written is None:  # normal where a kind of partner is not connected: not worth a line per message
        logger.debug(
            "no enabled partner for outbound message",
            extra={"partner_kind": partner_kind, "message_type": message_type},
        )
        return None
    message.partner_id, waiting, message.pk = written
    if message.pk is None:  # written before for this source event: that row is the message
        return OutboundMessage.objects.get(
            partner_id=message.partner_id, message_type=message_type, source_event_id=source_event_id
        )
    message._state.adding = False
    message._state.db = connection.alias
    if waiting:
        # Behind an undelivered message of the same key it could not go now anyway: the earlier
        # message's delivery queues it (or the tick does), so no task is spent on it.
        message.claimed_until = None
    else:
        message_id = message.pk
        transaction.on_commit(lambda: enqueue_delivery(message_id))
    return message


# One round trip per message: find the partner, see whether an undelivered message of the same
# ordering key is ahead, and insert unless this (partner, type, source event) was written already
# (ON CONFLICT DO NOTHING leaves the caller's transaction usable, no savepoint). No row back: no
# enabled partner; a row with no id: the message exists.
WRITE_ONCE_SQL = """
WITH partner AS (
    SELECT id FROM integrations_partner WHERE {partner_filter} ORDER BY code LIMIT 1
), target AS (
    SELECT p.id AS partner_id,
           EXISTS (SELECT 1 FROM integrations_outboundmessage m
                   WHERE m.partner_id = p.id AND m.ordering_key = %s AND m.status IN ({blocking})) AS waiting
    FROM partner p
), written AS (
    INSERT INTO integrations_outboundmessage (partner_id, {columns}, claimed_until)
    SELECT t.partner_id, {values}, CASE WHEN t.waiting THEN NULL ELSE %s::timestamptz END
    FROM target t
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT t.partner_id, t.waiting, (SELECT id FROM written) FROM target t
"""


def _write_once(message: OutboundMessage, *, partner_kind: str, partner: Partner | None) -> tuple | None:
    """Run WRITE_ONCE_SQL for `message`: (partner id, waiting behind another message, new id or None), or None."""
    sql, fields = _write_once_statement(by_partner_id=partner is not None)
    params = [
        partner.pk if partner is not None else partner_kind,
        message.ordering_key,
        *(field.get_db_prep_save(field.pre_save(message, add=True), connection) for field in fields),
        message.claimed_until,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@functools.cache
def _write_once_statement(*, by_partner_id: bool) -> tuple[str, list]:
    """WRITE_ONCE_SQL with the model's columns filled in, and the fields whose values it takes in that order."""
    fields = [
        field
        for field in OutboundMessage._meta.concrete_fields
        if not field.primary_key and field.attname not in ("partner_id", "claimed_until")
    ]
    sql = WRITE_ONCE_SQL.format(
        partner_filter="id = %s" if by_partner_id else "kind = %s AND is_enabled",
        blocking=", ".join(f"'{status}'" for status in OutboundMessage.BLOCKING),
        columns=", ".join(connection.ops.quote_name(field.column) for field in fields),
        values=", ".join(f"%s::{field.cast_db_type(connection)}" for field in fields),
    )
    return sql, fields


def enqueue_delivery(message_id: int) -> None:
    """Hand one message to an outbound worker; if the broker is down the tick queues it later."""
    from integrations.tasks import deliver_message

    try:
        deliver_message.apply_async((message_id,), queue=settings.OUTBOUND_QUEUE)
    except Exception:
        logger.warning("outbound delivery not queued; the tick will retry", extra={"message_id": message_id})
