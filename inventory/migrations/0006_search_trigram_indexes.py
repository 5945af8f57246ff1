"""Trigram indexes for searching items by any part of their SKU or description.

Built concurrently (outside a transaction): an existing catalogue stays writable meanwhile.
"""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently, TrigramExtension
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("inventory", "0005_receipt_purchase_order_index"),
    ]

    operations = [
        TrigramExtension(),
        AddIndexConcurrently(
            model_name="item",
            index=GinIndex(
                OpClass(Upper("sku"), name="gin_trgm_ops"),
                OpClass(Upper("description"), name="gin_trgm_ops"),
                name="item_search_trgm",
            ),
        ),
    ]
