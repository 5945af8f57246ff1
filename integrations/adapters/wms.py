"""WMS: released orders with their pick tasks, cancellations, deliveries to expect at the dock, counts to make."""

from __future__ import annotations

from integrations.adapters.base import Adapter


class WmsAdapter(Adapter):
    kind = "wms"
    paths = {
        "order.released": "/orders/releases",
        "order.cancelled": "/orders/cancellations",
        "receipt.expected": "/receipts/expected",
        "count.requested": "/counts/requests",
    }

    def translate(self, message_type: str, payload: dict) -> dict:
        if message_type == "order.released":
            return {
                "order": payload.get("order"),
                "warehouse": payload.get("warehouse"),
                "priority": payload.get("priority"),
                "tasks": payload.get("tasks", []),
            }
        if message_type == "order.cancelled":
            return {"order": payload.get("order"), "warehouse": payload.get("warehouse"), "action": "CANCEL"}
        if message_type == "receipt.expected":
            return {
                key: payload.get(key)
                for key in ("receipt", "warehouse", "supplier", "purchase_order", "kind", "dock", "lines")
            }
        return payload
