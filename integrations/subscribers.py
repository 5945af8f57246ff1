"""Core events that partners must hear about become outbox rows in the same transaction as the change."""

from __future__ import annotations

from integrations.models import OutboundMessage, Partner
from integrations.outbound import message_send
from portal.actors import Actor
from portal.events import subscribe
from portal.models import DomainEvent

ERP, WMS, TMS = "erp", "wms", "tms"


def actor_of(event: DomainEvent) -> Actor:
    kind, _, name = (event.actor or "system:events").partition(":")
    return Actor(kind=kind or "system", name=name or kind)


def send_for(event: DomainEvent, *, partner_kind: str, message_type: str, ordering_key: str, payload: dict):
    return message_send(
        partner_kind=partner_kind,
        message_type=message_type,
        payload={**payload, "event": event.name, "event_id": event.pk, "occurred_at": event.occurred_at.isoformat()},
        ordering_key=ordering_key,
        order_number=str(payload.get("order") or ""),
        actor=actor_of(event),
        source_event_id=event.pk,
    )


def order_key(payload: dict) -> str:
    return f"order:{payload.get('order')}"


# core event → (subscriber key, partner kind, message type, why the partner needs it); each message goes in
# order per order.
ORDER_MESSAGES = [
    ("order.validated", "order_accepted", ERP, "order.accepted", "the portal accepted the ERP's order"),
    ("order.allocated", "order_allocated", ERP, "order.allocated", "what was promised per line"),
    ("order.rejected", "order_rejected", ERP, "order.rejected", "the order was refused, and why"),
    ("order.released", "order_released", WMS, "order.released", "the released order with its pick tasks"),
    ("order.carrier_changed", "order_carrier_changed", TMS, "order.carrier_changed", "the order was rebooked"),
    ("shipment.packed", "shipment_packed", TMS, "shipment.ready", "a shipment is ready: book a carrier"),
    ("shipment.shipped", "shipment_shipped", ERP, "shipment.confirmed", "shipment confirmation, the invoice trigger"),
]


def _order_message(partner_kind: str, message_type: str, purpose: str):
    def forward(event: DomainEvent) -> None:
        send_for(
            event,
            partner_kind=partner_kind,
            message_type=message_type,
            ordering_key=order_key(event.payload),
            payload=event.payload,
        )

    forward.__doc__ = f"Tell the {partner_kind.upper()}: {purpose}."
    return forward


for _event_name, _key, _kind, _message_type, _purpose in ORDER_MESSAGES:
    subscribe(_event_name, in_transaction=True, key=f"integrations.{_key}")(
        _order_message(_kind, _message_type, _purpose)
    )


@subscribe("order.cancelled", in_transaction=True, key="integrations.order_cancelled")
def order_cancelled(event: DomainEvent) -> None:
    """The WMS stops work on a cancelled order, if it ever received it."""
    number = event.payload.get("order")
    if not OutboundMessage.objects.filter(
        order_number=number, message_type="order.released", partner__kind=WMS
    ).exists():
        return
    send_for(
        event,
        partner_kind=WMS,
        message_type="order.cancelled",
        ordering_key=order_key(event.payload),
        payload=event.payload,
    )


@subscribe("inventory.stock_adjusted", in_transaction=True, key="integrations.stock_adjusted")
def stock_adjusted(event: DomainEvent) -> None:
    """The ERP books an inventory adjustment (in order per item and warehouse)."""
    payload = event.payload
    send_for(
        event,
        partner_kind=ERP,
        message_type="inventory.adjusted",
        ordering_key=f"stock:{payload.get('warehouse')}:{payload.get('sku')}",
        payload=payload,
    )


@subscribe("inventory.receipt_expected", in_transaction=True, key="integrations.receipt_expected")
def receipt_expected(event: DomainEvent) -> None:
    """The WMS gets the delivery it should expect at its dock (in order per receipt)."""
    send_for(
        event,
        partner_kind=WMS,
        message_type="receipt.expected",
        ordering_key=f"receipt:{event.payload.get('receipt')}",
        payload=event.payload,
    )


@subscribe("inventory.count_requested", in_transaction=True, key="integrations.count_requested")
def count_requested(event: DomainEvent) -> None:
    """The WMS sends someone to count the location, unless the count is its own (an unplanned count it reported)."""
    actor = actor_of(event)
    if actor.kind == "partner" and Partner.objects.filter(code=actor.name, kind=WMS).exists():
        return
    send_for(
        event,
        partner_kind=WMS,
        message_type="count.requested",
        ordering_key=f"count:{event.payload.get('count_id')}",
        payload=event.payload,
    )
