"""Trigram indexes for searching orders and customers by any part of their numbers, references and names.

Built concurrently (outside a transaction): orders keep coming in meanwhile. The pg_trgm
extension comes with the inventory migration this one depends on.
"""

from django.contrib.postgres.indexes import GinIndex, OpClass
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations
from django.db.models.functions import Upper


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("inventory", "0006_search_trigram_indexes"),
        ("orchestration", "0008_release_credit_holds_when_clear"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="customer",
            index=GinIndex(
                OpClass(Upper("code"), name="gin_trgm_ops"),
                OpClass(Upper("name"), name="gin_trgm_ops"),
                name="customer_search_trgm",
            ),
        ),
        AddIndexConcurrently(
            model_name="order",
            index=GinIndex(
                OpClass(Upper("number"), name="gin_trgm_ops"),
                OpClass(Upper("external_ref"), name="gin_trgm_ops"),
                name="order_search_trgm",
            ),
        ),
    ]
