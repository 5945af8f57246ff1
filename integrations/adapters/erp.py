"""ERP: order acknowledgements, allocation, rejections, shipment confirmations (invoice trigger), adjustments."""

from __future__ import annotations

from integrations.adapters.base import Adapter


class ErpAdapter(Adapter):
    kind = "erp"
    paths = {
        "order.accepted": "/orders/acknowledgements",
        "order.allocated": "/orders/allocations",
        "order.rejected": "/orders/rejections",
        "shipment.confirmed": "/shipments/confirmations",
        "inventory.adjusted": "/inventory/adjustments",
    }

    def translate(self, message_type: str, payload: dict) -> dict:
        base = {
            "sales_order": payload.get("external_ref") or payload.get("order"),
            "portal_order": payload.get("order"),
            "customer": payload.get("customer"),
        }
        if message_type == "order.accepted":
            return {**base, "status": "ACCEPTED", "warehouse": payload.get("warehouse")}
        if message_type == "order.allocated":
            return {**base, "status": str(payload.get("outcome", "")).upper(), "lines": payload.get("lines", [])}
        if message_type == "order.rejected":
            return {**base, "status": "REJECTED", "reasons": payload.get("reasons", [])}
        if message_type == "shipment.confirmed":
            return {
                **base,
                "shipment": payload.get("shipment"),
                "carrier": payload.get("carrier"),
                "tracking_number": payload.get("tracking_number"),
                "shipped_at": payload.get("shipped_at"),
                "lines": payload.get("lines", []),
                "invoice": True,
            }
        if message_type == "inventory.adjusted":
            return {
                "sku": payload.get("sku"),
                "warehouse": payload.get("warehouse"),
                "quantity_delta": payload.get("on_hand_delta"),
                "reason_code": payload.get("kind"),
            }
        return payload

    def stock_report(self, partner, *, warehouse: str) -> dict[str, int]:
        """The ERP's book stock per SKU at a warehouse: ``GET <base>/stock?warehouse=<code>``."""
        response = self.fetch(partner, "/stock", {"warehouse": warehouse})
        response.raise_for_status()
        rows = response.json()
        if isinstance(rows, dict):
            rows = rows.get("items", [])
        return {str(row["sku"]): int(row["on_hand"]) for row in rows}
