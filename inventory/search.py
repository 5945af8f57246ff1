"""The top bar's search, for items (by SKU) and receipts (by their number or purchase order)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.db.models import Q
from django.urls import reverse

from inventory.models import Item, Receipt
from inventory.views import RECEIPT_ROLES, STOCK_ROLES
from portal.roles import allowed
from portal.search import HITS_PER_SOURCE, Hit


def find(term: str, user) -> list[Hit]:
    hits: list[Hit] = []
    if allowed(user, *STOCK_ROLES):
        items = Item.objects.filter(sku__istartswith=term).order_by("sku")[:HITS_PER_SOURCE]
        hits += [
            Hit(
                "Item",
                item.sku,
                f"{reverse('inventory:stock-list')}?{urlencode({'q': item.sku})}",
                item.description + ("" if item.is_active else " · no longer sold"),
                exact=item.sku.lower() == term.lower(),
            )
            for item in items
        ]
    if allowed(user, *RECEIPT_ROLES):
        receipts = (
            Receipt.objects.filter(Q(number__in={term, term.upper()}) | Q(purchase_order=term))
            .select_related("warehouse")
            .order_by("-created_at")[:HITS_PER_SOURCE]
        )
        hits += [
            Hit(
                "Receipt",
                receipt.number,
                reverse("inventory:receipt-detail", args=[receipt.number]),
                f"{receipt.supplier} · {receipt.warehouse.code} · {receipt.get_status_display()}",
                exact=True,
            )
            for receipt in receipts
        ]
    return hits
