"""Searches by any part of a number, reference, SKU or name can use their trigram indexes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Q

from inventory.models import Item
from orchestration.models import Customer, Order

pytestmark = pytest.mark.django_db


def plan(queryset) -> str:
    """How PostgreSQL would run the search if it could not read the whole table or a whole index in order.

    On a big table the planner makes that choice itself (about 1 ms against 160 ms for a search of
    300,000 orders); on a test's small one, reading everything is cheaper and it would, which says
    nothing about whether the search's expressions match the index.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
    return queryset.explain()


@pytest.mark.parametrize(
    ("queryset", "index"),
    [
        (
            lambda: Order.objects.filter(Q(number__icontains="1042") | Q(external_ref__icontains="1042")),
            "order_search_trgm",
        ),
        (lambda: Item.objects.filter(Q(sku__icontains="tape") | Q(description__icontains="tape")), "item_search_trgm"),
        (lambda: Item.objects.filter(sku__istartswith="TAPE-"), "item_search_trgm"),
        (
            lambda: Customer.objects.filter(Q(code__icontains="acme") | Q(name__icontains="acme")),
            "customer_search_trgm",
        ),
    ],
    ids=["orders", "items", "item-prefix", "customers"],
)
def test_a_search_reads_its_trigram_index(queryset, index):
    assert f"Bitmap Index Scan on {index}" in plan(queryset())
