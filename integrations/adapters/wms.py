"""WMS: released orders with their pick tasks, and cancellations."""

from __future__ import annotations

from integrations.adapters.base import Adapter


class WmsAdapter(Adapter):
    kind = "wms"
    paths = {"order.released": "/orders/releases", "order.cancelled": "/orders/cancellations"}

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
        return payload
