"""The partner simulator: plays the ERP, WMS, TMS and WCS against the portal's real API and outbound calls.

Run it with ``python -m integrations.simulator --portal http://127.0.0.1:8000`` (``make run`` does).
It serves ``/erp/…``, ``/wms/…``, ``/tms/…`` and ``/wcs/…`` for the portal's outbound messages
(deduplicating on ``Idempotency-Key``, checking signatures, with configurable error rate, latency and
outages), answers ``GET /erp/stock?warehouse=…`` for reconciliation, and — when it has partner
tokens — sends orders to ``POST /api/v1/orders`` and reports picks, shorts, packs and shipments back
as signed events on ``POST /api/v1/events``. ``/_control/…`` changes faults and reads counters.
"""
