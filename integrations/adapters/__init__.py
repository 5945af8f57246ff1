"""One adapter per partner kind: the canonical message becomes the partner's request.

Every adapter posts JSON to ``<partner.outbound_base_url><path>`` with the message's
``Idempotency-Key`` and an HMAC signature (``X-Timestamp``, ``X-Signature: sha256=<hex>`` over
``"<timestamp>.<raw body>"`` with the partner's secret) — the same scheme the portal checks
on inbound events.
"""

from __future__ import annotations

from integrations.adapters.base import Adapter, DeliveryResult, sign
from integrations.adapters.erp import ErpAdapter
from integrations.adapters.tms import TmsAdapter
from integrations.adapters.wcs import WcsAdapter
from integrations.adapters.wms import WmsAdapter

ADAPTERS: dict[str, Adapter] = {
    "erp": ErpAdapter(),
    "wms": WmsAdapter(),
    "tms": TmsAdapter(),
    "wcs": WcsAdapter(),
}


def adapter_for(kind: str) -> Adapter:
    """The adapter of a partner kind (a plain JSON adapter for kinds without their own)."""
    return ADAPTERS.get(kind) or Adapter()


__all__ = ["ADAPTERS", "Adapter", "DeliveryResult", "adapter_for", "sign"]
