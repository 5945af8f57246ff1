"""Inventory reconciliation: the ERP's book stock against the portal's movement ledger, per item and warehouse.

The ERP reports its book (``GET <erp base>/stock?warehouse=<code>`` → ``[{"sku", "on_hand"}]``);
only the SKUs it reports are compared (an item the ERP does not know is a master-data question,
not a count). A difference above ``INVENTORY_MISMATCH_THRESHOLD`` units raises (or repeats) an
``inventory_mismatch`` case; a difference that disappeared auto-resolves it.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.models import Sum

from integrations.adapters import adapter_for
from integrations.outbound import partner_for_kind
from inventory.models import Item, StockMovement, Warehouse
from portal.actors import Actor

logger = logging.getLogger(__name__)

RECONCILE_ACTOR = Actor.system("inventory-reconciliation")
MISMATCH = "inventory_mismatch"


def ledger_on_hand(warehouse: Warehouse) -> dict[str, int]:
    """On hand per SKU at a warehouse, summed from the append-only ledger (one query)."""
    rows = (
        StockMovement.objects.filter(stock_level__location__warehouse=warehouse)
        .values_list("stock_level__item__sku")
        .annotate(total=Sum("on_hand_delta"))
    )
    return {sku: int(total or 0) for sku, total in rows}


def compare(erp: dict[str, int], portal: dict[str, int], *, threshold: int) -> tuple[list[dict], list[str]]:
    """(mismatches beyond the threshold, SKUs that agree) over the SKUs the ERP reports."""
    mismatches, matching = [], []
    for sku, erp_on_hand in sorted(erp.items()):
        portal_on_hand = portal.get(sku, 0)
        difference = portal_on_hand - erp_on_hand
        if abs(difference) > threshold:
            mismatches.append(
                {"sku": sku, "erp_on_hand": erp_on_hand, "portal_on_hand": portal_on_hand, "difference": difference}
            )
        else:
            matching.append(sku)
    return mismatches, matching


def inventory_reconcile(*, threshold: int | None = None) -> dict:
    """Compare every active warehouse; returns counts of compared SKUs, mismatches and unreachable warehouses."""
    partner = partner_for_kind("erp")
    summary = {"compared": 0, "mismatches": 0, "errors": 0}
    if partner is None or not partner.outbound_base_url:
        return summary
    if partner.deliveries_paused():  # in a maintenance window its stock report is not to be trusted, or asked for
        logger.info("ERP paused; inventory reconciliation skipped", extra={"partner": partner.code})
        return summary
    threshold = settings.INVENTORY_MISMATCH_THRESHOLD if threshold is None else threshold
    adapter = adapter_for("erp")
    for warehouse in Warehouse.objects.filter(is_active=True):
        try:
            erp = adapter.stock_report(partner, warehouse=warehouse.code)
        except Exception as error:  # the ERP being down is not a stock mismatch
            summary["errors"] += 1
            logger.warning("ERP stock report unavailable", extra={"warehouse": warehouse.code, "error": str(error)})
            continue
        mismatches, matching = compare(erp, ledger_on_hand(warehouse), threshold=threshold)
        summary["compared"] += len(erp)
        summary["mismatches"] += len(mismatches)
        _raise_cases(warehouse, mismatches)
        _clear_cases(warehouse, matching)
    return summary


def _subject_id(warehouse: Warehouse, sku: str) -> str:
    return f"{warehouse.code}:{sku}"


def _raise_cases(warehouse: Warehouse, mismatches: list[dict]) -> None:
    if not mismatches:
        return
    try:
        from exceptions.services import case_raise
    except ImportError:
        logger.warning("no exceptions service; inventory mismatches not raised", extra={"count": len(mismatches)})
        return
    values = dict(Item.objects.filter(sku__in=[m["sku"] for m in mismatches]).values_list("sku", "unit_value"))
    for mismatch in mismatches:
        sku = mismatch["sku"]
        case_raise(
            type_code=MISMATCH,
            subject_type="inventory.item",
            subject_id=_subject_id(warehouse, sku),
            subject_label=f"{sku} at {warehouse.code}",
            summary=(
                f"{sku} at {warehouse.code}: portal ledger {mismatch['portal_on_hand']}, "
                f"ERP {mismatch['erp_on_hand']} ({mismatch['difference']:+d})"
            ),
            context={"warehouse": warehouse.code, **mismatch},
            materiality=abs(mismatch["difference"]) * values.get(sku, 0),
            warehouse=warehouse,
            actor=RECONCILE_ACTOR,
            reason="ERP stock differs from the portal's ledger",
        )


def _clear_cases(warehouse: Warehouse, skus: list[str]) -> None:
    try:
        from exceptions.models import Case
        from exceptions.services import case_auto_resolve
    except ImportError:
        return
    open_ids = set(
        Case.objects.filter(
            type__code=MISMATCH,
            subject_type="inventory.item",
            subject_id__in=[_subject_id(warehouse, sku) for sku in skus],
        )
        .exclude(status__in=Case.CLOSED_STATES)
        .values_list("subject_id", flat=True)
    )
    for subject_id in sorted(open_ids):
        case_auto_resolve(
            type_code=MISMATCH,
            subject_type="inventory.item",
            subject_id=subject_id,
            actor=RECONCILE_ACTOR,
            reason="ERP and portal stock agree again",
        )
