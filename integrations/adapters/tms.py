"""TMS: shipments ready for a carrier."""

from __future__ import annotations

from integrations.adapters.base import Adapter


class TmsAdapter(Adapter):
    kind = "tms"
    paths = {"shipment.ready": "/shipments"}

    def translate(self, message_type: str, payload: dict) -> dict:
        if message_type == "shipment.ready":
            return {
                "shipment": payload.get("shipment"),
                "order": payload.get("order"),
                "origin": payload.get("warehouse"),
                "destination": payload.get("ship_to", {}),
                "carrier": payload.get("carrier"),
                "service_level": payload.get("service_level"),
                "packages": payload.get("packages"),
            }
        return payload
