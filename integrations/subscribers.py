"""Core events that partners must hear about become outbox rows in the same transaction as the change."""

from __future__ import annotations

from integrations.models import OutboundMessage
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


@subscribe("order.validated", in_transaction=True, key="integrations.order_accepted")
def order_accepted(event: DomainEvent) -> None:
    """The ERP learns that the portal accepted its order."""
    send_for(
        event,
        partner_kind=ERP,
        message_type="order.accepted",
        ordering_key=order_key(event.payload),
        payload=event.payload,
    )


@subscribe("order.allocated", in_transaction=True, key="integrations.order_allocated")
def order_allocated(event: DomainEvent) -> None:
    """The ERP learns what was promised per line (allocated, partial, backordered)."""
    send_for(
        event,
        partner_kind=ERP,
        message_type="order.allocated",
        ordering_key=order_key(event.payload),
        payload=event.payload,
    )


@subscribe("order.rejected", in_transaction=True, key="integrations.order_rejected")
def order_rejected(event: DomainEvent) -> None:
    """The ERP learns that the order was refused and why."""
    send_for(
        event,
        partner_kind=ERP,
        message_type="order.rejected",
        ordering_key=order_key(event.payload),
        payload=event.payload,
    )


@subscribe("order.released", in_transaction=True, key="integrations.order_released")
def order_released(event: DomainEvent) -> None:
    """The WMS receives the released order with its pick tasks."""
    send_for(
        event,
        partner_kind=WMS,
        message_type="order.released",
        ordering_key=order_key(event.payload),
        payload=event.payload,
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


@subscribe("shipment.packed", in_transaction=True, key="integrations.shipment_packed")
def shipment_packed(event: DomainEvent) -> None:
    """The TMS books a carrier for a shipment that is ready."""
    send_for(
        event,
        partner_kind=TMS,
        message_type="shipment.ready",
        ordering_key=order_key(event.payload),
        payload=event.payload,
    )


@subscribe("shipment.shipped", in_transaction=True, key="integrations.shipment_shipped")
def shipment_shipped(event: DomainEvent) -> None:
    """The ERP receives the shipment confirmation, its trigger to invoice."""
    send_for(
        event,
        partner_kind=ERP,
        message_type="shipment.confirmed",
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
